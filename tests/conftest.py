"""Fixtures shared by the HTTP-level suites: real `arop serve` processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.auth import new_api_key
from tests.server import RunningServer, run_server
from tests.support import IN_CI

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """CI runs every test against real services: a skip there means something was not set up."""
    if IN_CI and _skipped and exitstatus == 0:
        print(f"\nCI=true forbids skipped tests; skipped: {', '.join(_skipped)}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The service as a newcomer runs it: no configuration, loopback, the todo bundle."""
    with run_server(tmp_path_factory.mktemp("server")) as running:
        yield running


class Keys:
    def __init__(self) -> None:
        self.evaluate, self._evaluate_hash = new_api_key()
        self.admin, self._admin_hash = new_api_key()

    def config(self) -> str:
        return (
            f'[[callers]]\nname = "pep"\nkey_sha256 = "{self._evaluate_hash}"\nscopes = ["evaluate"]\n\n'
            f'[[callers]]\nname = "operator"\nkey_sha256 = "{self._admin_hash}"\nscopes = ["evaluate", "admin"]\n'
        )


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="session")
def secured_server(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[RunningServer]:
    """The service with API keys configured (every API authenticates) and fast reloads."""
    config = keys.config() + "\n[policy]\nreload_interval = 0.2\n\n[pdp]\nsigned_metadata = true\n"
    with run_server(tmp_path_factory.mktemp("secured"), config=config) as running:
        yield running
