"""The suite runs on several pytest-xdist workers (issue 19 item 16): what tests share
across workers must not clash."""

from __future__ import annotations

import pytest

from tests import conftest


@pytest.mark.parametrize("worker", [0, 1, 2])
def test_each_worker_takes_only_its_share_of_ports(
    monkeypatch: pytest.MonkeyPatch, worker: int
) -> None:
    """Two workers never hand out the same port (each its own residue class), and one
    worker never hands a port out twice."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    monkeypatch.setattr(conftest, "_handed_out", set())
    ports = [conftest.free_port() for _ in range(30)]
    assert len(set(ports)) == len(ports)
    assert {p // 2 % 3 for p in ports} == {worker}


def test_without_xdist_any_free_port_will_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert conftest._xdist_slot() == (0, 1)
    assert 0 < conftest.free_port() < 65536
