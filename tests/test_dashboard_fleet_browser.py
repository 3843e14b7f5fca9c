"""The dashboard's operator views in a real headless Chromium (Debian's, driven by
Playwright) against two real worker processes sharing one SQLite queue: page through jobs
to page 3, filter by error text, jump to a job by id, bulk-retry everything a filter
matches after a confirmation that counts it, pause an action and watch its jobs wait while
others run, and see a SIGKILLed worker turn gone on the workers page. The schedules page
shows a schedule's next and last runs; the same pages render at 390 px and in dark mode.

``USVC_SCREENSHOTS=docs/screenshots`` also saves the pages there (light and dark).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, ServiceProcess, free_port, wait_until
from tests.test_dashboard_browser import CHROMIUM, SERVICE, TOKEN, _api, _shot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (bash scripts/install-chromium.sh)",
    ),
]

PAGE_SIZE = 25  # the dashboard's page


@pytest.fixture
def fleet(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> tuple[ServiceProcess, ServiceProcess, Path]:
    """Two worker processes of one service on one SQLite queue (each with its HTTP port)."""
    marker = tmp_path / "provider-down"
    marker.touch()
    env = {
        "MICROSERVICE_NAME": SERVICE,
        "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "POLLING_INTERVAL_SECONDS": "0.1",
        "LEASE_SECONDS": "3",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "ADMIN_TOKEN": TOKEN,
        "FLAKY_MARKER": str(marker),
        "SCHEDULES": json.dumps({"tidy": "*/2 * * * * *"}),
    }
    where = ROOT / "tests" / "services" / "dashboard"
    first = service(where, {**env, "HTTP_PORT": str(free_port())})
    first.wait_healthy()
    second = service(where, {**env, "HTTP_PORT": str(free_port())})
    second.wait_healthy()
    return first, second, marker


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield chromium
        finally:
            chromium.close()


def _sign_in(page: Any, url: str) -> None:
    page.goto(f"{url}/admin/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/admin/")


def _enqueue(svc: ServiceProcess, payload: dict[str, Any], delay: float = 0.0) -> str:
    job = _api(svc, "POST", "/jobs", json={"payload": payload, "delay_seconds": delay})
    return str(job["id"])


def _until_status(svc: ServiceProcess, job_id: str, status: str) -> None:
    wait_until(lambda: _api(svc, "GET", f"/jobs/{job_id}")["status"] == status)


def test_operate_a_fleet_from_the_dashboard(
    fleet: tuple[ServiceProcess, ServiceProcess, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    svc, other, marker = fleet
    # 60 scheduled jobs (newest first: the oldest ten are on page 3), three failing ones.
    later = [_enqueue(svc, {"action": "greet", "name": f"n{i}"}, delay=3600) for i in range(60)]
    failing = [_enqueue(svc, {"action": "flaky", "order": i}) for i in range(3)]
    for job_id in failing:
        _until_status(svc, job_id, "Failed")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(page, svc.url)

    # Page through the scheduled jobs to page 3, where the oldest one is; open it.
    page.click("text=All jobs")
    page.select_option("#f-status", "Scheduled")
    page.fill("#f-action", "greet")
    page.click("#apply-filter")
    expect(page.locator("#page-number")).to_have_text("page 1")
    assert page.locator("table.jobs tbody tr").count() == PAGE_SIZE
    assert page.locator("table.jobs tbody tr .status").first.inner_text() == "Scheduled"
    page.click("#page-next")
    expect(page.locator("#page-number")).to_have_text("page 2")
    page.click("#page-next")
    expect(page.locator("#page-number")).to_have_text("page 3")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(60 - 2 * PAGE_SIZE)
    assert page.locator("#page-next").is_disabled()
    _shot(page, "jobs")
    # The view is in the URL: a shared link opens the same page.
    shared = page.url
    assert "status=scheduled" in shared and "cursor=" in shared
    again = context.new_page()
    again.goto(shared)
    expect(again.locator("#page-number")).to_have_text("page 3")
    expect(again.locator(f"a.job-link:text-is('{later[0]}')")).to_have_count(1)
    again.close()
    page.click("#page-prev")
    expect(page.locator("#page-number")).to_have_text("page 2")
    page.click("#page-next")
    page.click(f"a.job-link:text-is('{later[0]}')")
    expect(page.locator("#job-id")).to_have_text(later[0])
    expect(page.locator("#job-status")).to_have_text("Scheduled")

    # Filter on the error message's text.
    page.goto(f"{svc.url}/admin/#/jobs")
    page.fill("#f-error_text", "PAYMENT PROVIDER")
    page.click("#apply-filter")
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    assert "error_text=PAYMENT+PROVIDER" in page.url
    assert "the payment provider is down" in page.locator("table.jobs").inner_text()
    # A time range: none of them was created after 2099.
    page.fill("#f-created_after", "2099-01-01T00:00")
    page.click("#apply-filter")
    expect(page.locator("p.empty")).to_have_text("No job matches.")
    assert "created_after=209" in page.url  # in UTC (2098 east of Greenwich)

    # Jump to a job by its id.
    page.fill("#find-key", failing[1])
    page.click("#find-go")
    expect(page.locator("#job-id")).to_have_text(failing[1])
    assert page.url.endswith(f"#/job/{failing[1]}")
    _shot(page, "job")

    # Bulk retry of everything the filter matches: the dialog counts it first.
    marker.unlink()
    page.goto(f"{svc.url}/admin/#/jobs?status=Failed")
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    page.check(f"#pick-{failing[0]}")
    expect(page.locator("#selected-count")).to_have_text("1 job selected")
    page.click("#bulk-retry-matching")
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    assert "Retry all 3 jobs matching this filter?" in page.locator("#confirm-text").inner_text()
    page.click("#confirm-cancel")  # nothing happens
    expect(dialog).to_be_hidden()
    assert _api(svc, "GET", f"/jobs/{failing[0]}")["status"] == "Failed"
    page.click("#bulk-retry-matching")
    page.click("#confirm-ok")
    expect(page.locator("#action-note")).to_have_text("Retry: 3 of 3 matching jobs.")
    for job_id in failing:
        _until_status(svc, job_id, "Completed")

    # Pause greet: its new job waits while a flaky job enqueued after it runs.
    page.click("text=Actions")
    page.click("#pause-greet")
    expect(page.locator("tr[data-action=greet] .state")).to_have_text("paused")
    waiting = _enqueue(svc, {"action": "greet", "name": "Paused"})
    runs = _enqueue(svc, {"action": "flaky", "order": 99})
    wait_until(lambda: _api(svc, "GET", f"/jobs/{runs}")["status"] == "Completed")
    assert _api(svc, "GET", f"/jobs/{waiting}")["status"] == "Ready"
    # 60 scheduled and the one waiting for the resume
    expect(page.locator("tr[data-action=greet] td.num").first).to_have_text("61", timeout=10_000)
    expect(page.locator("svg.chart.runtime").first).to_be_visible(timeout=10_000)
    _shot(page, "actions")
    page.click("#resume-greet")
    expect(page.locator("tr[data-action=greet] .state")).to_have_text("active")
    wait_until(lambda: _api(svc, "GET", f"/jobs/{waiting}")["status"] == "Completed")

    # Schedules: the next slot and the last run with its job.
    page.click("text=Schedules")
    row = page.locator("tr[data-action=tidy]")
    expect(row.locator("a.slot.Completed").first).to_be_visible(timeout=15_000)
    assert row.locator(".next-run").inner_text() != "\u2013"  # the placeholder dash
    _shot(page, "schedules")

    # Workers: both processes live; the SIGKILLed one turns gone.
    page.click("text=Workers")
    expect(page.locator("#workers-summary")).to_have_text("2 live, 0 gone")
    pids = {int(p) for p in page.locator("table.workers tbody tr").evaluate_all(
        "rows => rows.map((r) => r.dataset.pid)")}  # fmt: skip
    assert pids == {svc.proc.pid, other.proc.pid}
    other.signal(signal.SIGKILL)
    other.wait(10)
    expect(page.locator(f"tr[data-pid='{other.proc.pid}'] .state")).to_have_text(
        "gone", timeout=20_000
    )
    expect(page.locator(f"tr[data-pid='{svc.proc.pid}'] .state")).to_have_text("live")
    expect(page.locator("#workers-summary")).to_have_text("1 live, 1 gone")
    _shot(page, "workers")

    # The overview, light and dark, wide and 390 px wide.
    page.click("text=Overview")
    page.wait_for_selector("#count-Completed")
    _shot(page, "overview")
    dark = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    dark_page = dark.new_page()
    dark_page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(dark_page, svc.url)
    dark_page.wait_for_selector("#count-Completed")
    background = dark_page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 23, 28)"
    _shot(dark_page, "overview-dark")
    dark_page.goto(f"{svc.url}/admin/#/jobs?status=Completed")
    dark_page.wait_for_selector("table.jobs")
    _shot(dark_page, "jobs-dark")
    dark_page.goto(f"{svc.url}/admin/#/workers")
    dark_page.wait_for_selector("table.workers")
    _shot(dark_page, "workers-dark")
    dark.close()

    narrow = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = narrow.new_page()
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(phone, svc.url)
    phone.goto(f"{svc.url}/admin/#/jobs?status=Completed")
    phone.wait_for_selector("table.jobs")
    # Nothing but the table's own scroller is wider than the screen.
    wide = phone.evaluate(
        """() => [...document.querySelectorAll('body *')]
                 .filter((e) => !e.closest('.table-wrap') && e.getBoundingClientRect().right > 391)
                 .map((e) => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    assert wide == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(phone, "jobs-390")
    narrow.close()

    assert errors == []
    context.close()


def test_auto_refresh_keeps_the_selection_and_focus_and_can_be_paused(
    fleet: tuple[ServiceProcess, ServiceProcess, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    svc, _, _ = fleet
    ids = [_enqueue(svc, {"action": "greet", "name": f"n{i}"}, delay=3600) for i in range(3)]
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, svc.url)
    page.goto(f"{svc.url}/admin/#/jobs?status=scheduled")
    page.check(f"#pick-{ids[1]}")
    page.focus(f"#pick-{ids[1]}")
    before = page.locator("#refreshed").inner_text()
    expect(page.locator("#refreshed")).not_to_have_text(before, timeout=15_000)  # refreshed
    assert page.locator(f"#pick-{ids[1]}").is_checked()
    assert page.evaluate("document.activeElement.id") == f"pick-{ids[1]}"
    # A job enqueued now shows after the next refresh, unless refresh is paused.
    page.click("#refresh-toggle")
    expect(page.locator("#refresh-toggle")).to_have_attribute("aria-pressed", "true")
    newer = _enqueue(svc, {"action": "greet", "name": "new"}, delay=3600)
    paused_at = page.locator("#refreshed").inner_text()
    page.wait_for_timeout(6_000)  # longer than one refresh period
    assert page.locator("#refreshed").inner_text() == paused_at
    assert page.locator(f"#pick-{newer}").count() == 0
    page.click("#refresh-toggle")
    expect(page.locator(f"#pick-{newer}")).to_have_count(1, timeout=15_000)
    assert page.locator(f"#pick-{ids[1]}").is_checked()
    # The job page polls without the payload: later reads leave it out.
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/admin/api/jobs/" in r.url else None)
    page.goto(f"{svc.url}/admin/#/job/{ids[0]}")
    expect(page.locator("#payload pre")).to_contain_text('"name": "n0"')
    for _ in range(300):  # Playwright delivers its events while it is called: poll with it
        if sum("payload=false" in u for u in reads) >= 3:
            break
        page.wait_for_timeout(100)
    assert sum("payload=false" in u for u in reads) >= 3
    assert sum("payload=false" not in u for u in reads) == 1
    context.close()
