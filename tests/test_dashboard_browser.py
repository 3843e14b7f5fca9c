"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
service process on a SQLite queue: log in, read the counts, open a failed job, retry it and
watch it complete, cancel a Ready job; a wrong token and a cross-site POST are refused; a
``<script>`` payload shows as text and does not run.

Behind TLS: Debian's nginx terminates https with a throw-away certificate in front of the
same kind of service (``HTTP_TRUSTED_PROXIES``, ``ADMIN_PUBLIC_ORIGIN``); the browser logs
in, retries and cancels through it, and the session cookie is ``Secure``.

``USVC_SCREENSHOTS=docs/screenshots`` also saves the main pages there (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServiceProcess, free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
NGINX = Path("/usr/sbin/nginx")
TOKEN = "dashboard-test-token-7f3a-0a9b8c7d6e5f4g3h2"
SERVICE = "billing"
XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (bash scripts/install-chromium.sh)",
    ),
]


def _start_dashboard(
    tmp_path: Path, service: Callable[..., ServiceProcess], **extra: str
) -> tuple[ServiceProcess, Path]:
    marker = tmp_path / "provider-down"
    marker.touch()
    svc = service(
        ROOT / "tests" / "services" / "dashboard",
        {
            "MICROSERVICE_NAME": SERVICE,
            "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "POLLING_INTERVAL_SECONDS": "0.1",
            "LEASE_SECONDS": "3",
            "HTTP_PORT": str(free_port()),
            "ADMIN_TOKEN": TOKEN,
            "FLAKY_MARKER": str(marker),
            **extra,
        },
    )
    svc.wait_healthy()
    return svc, marker


@pytest.fixture
def dashboard(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> tuple[ServiceProcess, Path]:
    return _start_dashboard(tmp_path, service)


_NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            # The usual lines: Host without the port, the scheme and client forwarded.
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@pytest.fixture
def behind_tls(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> Iterator[tuple[str, ServiceProcess, Path]]:
    """The dashboard's service behind nginx terminating TLS: (https URL, service, marker)."""
    if not NGINX.exists() or shutil.which("openssl") is None:
        pytest.skip("needs Debian's nginx and openssl (bash scripts/install-nginx.sh)")
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(conf_dir / "key.pem"), "-out", str(conf_dir / "cert.pem")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    svc, marker = _start_dashboard(
        tmp_path, service, HTTP_TRUSTED_PROXIES="127.0.0.1", ADMIN_PUBLIC_ORIGIN=public
    )
    conf = conf_dir / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(tmp=conf_dir, port=port, upstream=svc.port))
    nginx = subprocess.Popen(
        [str(NGINX), "-p", str(conf_dir), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def proxied() -> bool:
            if nginx.poll() is not None:
                raise AssertionError((conf_dir / "error.log").read_text())
            try:
                return httpx.get(f"{public}/health", verify=False, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(proxied)
        yield public, svc, marker
    finally:
        nginx.terminate()
        nginx.wait(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _api(svc: ServiceProcess, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(
        method, f"{svc.url}/admin/api{path}", headers={"Authorization": f"Bearer {TOKEN}"}, **kw
    )
    r.raise_for_status()
    return r.json()


def _shot(page: Any, name: str) -> None:
    where = os.environ.get("USVC_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def test_operate_the_queue_from_the_dashboard(
    dashboard: tuple[ServiceProcess, Path], browser: Any
) -> None:
    from playwright.sync_api import expect

    svc, marker = dashboard
    # Work for the service: a completed job (with a hostile name), a failing one, a delayed one.
    xss = _api(svc, "POST", "/jobs", json={"payload": {"action": "greet", "name": XSS}})
    flaky = _api(svc, "POST", "/jobs", json={"payload": {"action": "flaky", "order": 42}})
    later = _api(
        svc,
        "POST",
        "/jobs",
        json={"payload": {"action": "greet", "name": "Later"}, "delay_seconds": 3600},
    )
    wait_until(lambda: _api(svc, "GET", f"/jobs/{flaky['id']}")["status"] == "Failed")
    wait_until(lambda: _api(svc, "GET", f"/jobs/{xss['id']}")["status"] == "Completed")

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # A wrong token is refused; the right one signs in.
    page.goto(f"{svc.url}/admin/")
    assert page.url.endswith("/admin/login")
    _shot(page, "login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "wrong token"
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{svc.url}/admin/")

    # The overview counts what the queue holds.
    page.wait_for_selector("#count-Failed")
    assert page.locator("#count-Completed").inner_text() == "1"
    assert page.locator("#count-Failed").inner_text() == "1"
    assert page.locator("#count-Ready").inner_text() == "1"
    assert page.locator("svg.chart.ok rect").count() == 60
    _shot(page, "overview")

    # Failed jobs: the error code and message; open the job.
    page.click("text=Failed jobs")
    page.wait_for_selector("table.jobs")
    row = page.locator("table.jobs tbody tr")
    assert row.count() == 1
    assert "HANDLER_ERROR" in row.inner_text()
    assert "the payment provider is down" in row.inner_text()
    _shot(page, "failed")
    page.click(f"a.job-link:text-is('{flaky['id']}')")
    page.wait_for_selector("#retry")
    assert page.locator("#job-error-code").inner_text() == "HANDLER_ERROR"
    _shot(page, "job")

    # The cause is gone: retry, and watch it complete (the page refreshes itself).
    marker.unlink()
    page.click("#retry")
    page.click("#confirm-ok")  # the in-page confirmation
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=20_000)
    assert '"charged": 1' in page.locator("pre.json").last.inner_text()

    # Cancel the delayed Ready job.
    page.goto(f"{svc.url}/admin/#/job/{later['id']}")
    page.wait_for_selector("#cancel")
    page.click("#cancel")
    page.click("#confirm-ok")
    expect(page.locator("#job-error-code")).to_have_text("CANCELLED")
    assert _api(svc, "GET", f"/jobs/{later['id']}")["status"] == "Failed"

    # A hostile payload is text, and nothing of it ran.
    page.goto(f"{svc.url}/admin/#/job/{xss['id']}")
    page.wait_for_selector("pre.json")
    assert "<script>window.pwned = 1</script>" in page.locator("pre.json").first.inner_text()
    assert page.evaluate("window.pwned") is None
    assert page.locator("script:not([src])").count() == 0

    # A cross-site page cannot act with the session: SameSite=Strict keeps the cookie home,
    # and the API wants the CSRF token besides. The session's own fetch without it: 403.
    status = page.evaluate(
        """async (id) => (await fetch('/admin/api/jobs/' + id + '/cancel',
                                      {method: 'POST', credentials: 'same-origin'})).status""",
        later["id"],
    )
    assert status == 403
    target = _api(
        svc,
        "POST",
        "/jobs",
        json={"payload": {"action": "greet", "name": "Target"}, "delay_seconds": 3600},
    )
    evil = context.new_page()
    evil_url = f"http://127.0.0.2:{free_port()}/"
    evil.route(
        evil_url,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<form id=f method=post action="{svc.url}/admin/api/jobs/{target["id"]}/cancel">
                     </form><script>document.getElementById('f').submit()</script>""",
        ),
    )
    with evil.expect_navigation(url=f"{svc.url}/admin/api/jobs/{target['id']}/cancel"):
        evil.goto(evil_url)
    assert "log in at /admin/login" in evil.content()  # 401: the cookie stayed home
    assert _api(svc, "GET", f"/jobs/{target['id']}")["status"] == "Ready"
    assert errors == []
    context.close()


def test_the_dashboard_behind_a_tls_proxy(
    behind_tls: tuple[str, ServiceProcess, Path], browser: Any
) -> None:
    """nginx terminates TLS; the service trusts its X-Forwarded-* and knows its public
    origin: the cookie is Secure, and the dashboard's own Retry and Cancel pass the
    Origin check."""
    from playwright.sync_api import expect

    public, svc, marker = behind_tls
    flaky = _api(svc, "POST", "/jobs", json={"payload": {"action": "flaky", "order": 7}})
    later = _api(
        svc,
        "POST",
        "/jobs",
        json={"payload": {"action": "greet", "name": "Later"}, "delay_seconds": 3600},
    )
    wait_until(lambda: _api(svc, "GET", f"/jobs/{flaky['id']}")["status"] == "Failed")

    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{public}/admin/")
    assert page.url == f"{public}/admin/login"  # the redirect stayed on the public origin
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{public}/admin/")
    [cookie] = [c for c in context.cookies() if c["name"] == "usvc_admin"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    marker.unlink()
    page.goto(f"{public}/admin/#/job/{flaky['id']}")
    page.wait_for_selector("#retry")
    page.click("#retry")
    page.click("#confirm-ok")  # the in-page confirmation
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=20_000)

    page.goto(f"{public}/admin/#/job/{later['id']}")
    page.wait_for_selector("#cancel")
    page.click("#cancel")
    page.click("#confirm-ok")
    expect(page.locator("#job-error-code")).to_have_text("CANCELLED")
    assert _api(svc, "GET", f"/jobs/{later['id']}")["status"] == "Failed"

    assert errors == []
    context.close()
