"""Browser tests of the reviewer UI: Playwright drives Debian's Chromium (never a downloaded
browser) against real `arop serve` processes; a PEP speaks to the same servers over HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.auth import new_api_key
from services.reviewer.accounts import hash_password
from tests.server import RunningServer, run_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What Chromium needs to run headless as root on a machine with a closed network (ci-notes.md).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module. Not for the session: Playwright's sync API keeps an event loop
    running in the main thread while it is open, and later suites call asyncio.run()."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh, empty profile directory of its own.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def reviewers_config(*people: tuple[str, str]) -> str:
    """[[reviewers]] entries with local passwords: (name, entity id of a User)."""
    digest = hash_password(PASSWORD)
    return "".join(f'[[reviewers]]\nname = "{name}"\nentity = {{ type = "User", id = "{entity}" }}\npassword_hash = "{digest}"\n\n' for name, entity in people)


class Pep:
    """A PEP of the trading-agent bundle: asks for decisions, submits requestable denials,
    polls its tasks and re-evaluates with the approval."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.http = server.client(headers={"Authorization": f"Bearer {key}"})

    def evaluate(self, amount: int, **context: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        request = {
            "subject": {"type": "Agent", "id": "trader-7"}, "action": {"name": "buy"},
            "resource": {"type": "Portfolio", "id": "alice-main"}, "context": {"amount": amount, **context},
        }
        response = self.http.post("/access/v1/evaluation", json=request)
        assert response.status_code == 200, response.text
        return request, response.json()

    def request_buy(self, amount: int, justification: str) -> tuple[dict[str, Any], str]:
        """A requestable denial of a buy, submitted: (the evaluation request, the task id)."""
        request, decision = self.evaluate(amount)
        hint = decision["context"]["access_request"]
        body = {
            **request, "context": {**request["context"], "business_justification": justification},
            "denial": {"expires_at": hint["expires_at"], "template": hint["template"], "binding_token": hint["binding_token"], "evaluation_id": decision["context"]["evaluation_id"]},
        }
        submitted = self.http.post("/access/v1/requests", json=body)
        assert submitted.status_code == 202, submitted.text
        return {**request, "context": body["context"]}, submitted.json()["task"]["id"]

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/access/v1/requests/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def reevaluate(self, request: dict[str, Any], approval: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/access/v1/evaluation", json={**request, "context": {**request["context"], "approval": approval}})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


class AgentsDeployment:
    def __init__(self, server: RunningServer, pep: Pep) -> None:
        self.server = server
        self.pep = pep
        self.url = server.base_url


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentsDeployment]:
    """examples/agents with its owner alice, bob (owns another portfolio) and carol (an
    administrator) as reviewers, and one PEP."""
    key, digest = new_api_key()
    config = (
        f'[[callers]]\nname = "pep"\nkey_sha256 = "{digest}"\nscopes = ["evaluate", "request", "cancel"]\n\n'
        + reviewers_config(("alice", "alice"), ("bob", "bob"), ("carol", "carol"))
        + '[reviewer_ui]\nlive_interval = 0.2\nadmins = [{ type = "User", id = "carol" }]\n'
    )
    with run_server(tmp_path_factory.mktemp("agents-ui"), config=config, args=("--bundle", str(AGENTS))) as server:
        yield AgentsDeployment(server, Pep(server, key))


def sign_in(browser: Any, base_url: str, name: str, *, viewport: dict[str, int] = DESKTOP) -> Any:
    """A fresh browser context (its own cookies) signed in as `name`; returns its page."""
    context = browser.new_context(base_url=base_url, viewport=viewport)
    page = context.new_page()
    page.goto("/ui/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/")
    return page


def http_status(base_url: str, path: str) -> int:
    return httpx.get(base_url + path, follow_redirects=False).status_code
