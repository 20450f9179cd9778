"""The reviewer UI signing people in with OpenID Connect against a real provider (panva's
oidc-provider over HTTPS), in a two-step workflow: a manager, then the service's owner, each
sees what the other decided; the requester follows it in "My requests"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from services.auth import new_api_key
from tests.browser.conftest import DESKTOP, reviewers_config, sign_in
from tests.browser.oidc_provider import run_oidc_provider
from tests.https_receiver import TestCA
from tests.server import RunningServer, free_port, run_server

pytestmark = pytest.mark.integration
DEPLOYS = Path(__file__).resolve().parents[1] / "arap" / "deploys"


class Deployment:
    def __init__(self, server: RunningServer, key: str) -> None:
        self.url = server.base_url
        self.http = server.client(headers={"Authorization": f"Bearer {key}"})

    def request_deploy(self, subject: str, service: str) -> str:
        request = {"subject": {"type": "User", "id": subject}, "action": {"name": "deploy"}, "resource": {"type": "Service", "id": service}, "context": {"env": "prod"}}
        decision = self.http.post("/access/v1/evaluation", json=request).json()
        hint = decision["context"]["access_request"]
        body = {**request, "denial": {"expires_at": hint["expires_at"], "template": hint["template"], "binding_token": hint["binding_token"]}}
        submitted = self.http.post("/access/v1/requests", json=body)
        assert submitted.status_code == 202, submitted.text
        return str(submitted.json()["task"]["id"])

    def status(self, task_id: str) -> str:
        return str(self.http.get(f"/access/v1/requests/{task_id}").json()["task"]["status"])


@pytest.fixture(scope="module")
def deploys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("oidc-ui")
    ca = TestCA(workdir)
    port = free_port()
    key, digest = new_api_key()
    with run_oidc_provider(
        client_id="arop-reviewer", client_secret="s3cret-of-the-reviewer-ui", redirect_uri=f"http://127.0.0.1:{port}/ui/login/oidc/callback",
        tls=ca.issue_server(["127.0.0.1"]),
    ) as issuer:
        config = (
            f'[[callers]]\nname = "pep"\nkey_sha256 = "{digest}"\nscopes = ["evaluate", "request"]\n\n' + reviewers_config(("dave", "dave"))
            + "[reviewer_ui]\nlive_interval = 0.2\n\n"
            + f'[reviewer_ui.oidc]\nissuer = "{issuer}"\nclient_id = "arop-reviewer"\nclient_secret = "s3cret-of-the-reviewer-ui"\n'
            + f'display_name = "Example SSO"\nca_file = "{ca.ca_file}"\n'
        )
        with run_server(workdir / "server", config=config, args=("--bundle", str(DEPLOYS)), port=port) as server:
            yield Deployment(server, key)


def sign_in_with_sso(browser: Any, deployment: Deployment, login: str) -> Any:
    # The provider's own pages are served with a certificate of the tests' CA.
    page = browser.new_context(base_url=deployment.url, viewport=DESKTOP, ignore_https_errors=True).new_page()
    page.goto("/ui/")
    page.get_by_role("link", name="Sign in with Example SSO").click()
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any")
    page.locator('button[type="submit"]').click()
    try:
        page.wait_for_url(f"{deployment.url}/ui/", timeout=10_000)
    except Exception:
        raise AssertionError(f"sign-in ended at {page.url}: {page.content()[:1500]}") from None
    return page


def test_sso_sign_in_then_two_steps_each_showing_the_other_approvers_decision(browser: Any, deploys: Deployment) -> None:
    task_id = deploys.request_deploy("dave", "billing")
    alice = sign_in_with_sso(browser, deploys, "alice")  # a manager: step 1
    expect(alice.locator("header.bar")).to_contain_text("alice")  # the entity id, never an editable display name
    alice.locator(f'a[href="/ui/tasks/{task_id}"]').click()
    alice.get_by_role("button", name="Approve").click()
    expect(alice.get_by_test_id("confirmation")).to_contain_text("it now waits for step 2 (owner)")
    carol = sign_in_with_sso(browser, deploys, "carol")  # the owner of billing: step 2
    carol.goto(f"/ui/tasks/{task_id}")
    expect(carol.locator("ol.steps")).to_contain_text("User alice approved")
    carol.get_by_role("button", name="Approve").click()
    expect(carol.get_by_test_id("confirmation")).to_have_text("You approved this request: it is approved.")
    assert deploys.status(task_id) == "approved"
    dave = sign_in(browser, deploys.url, "dave")  # the requester, with a local account
    dave.get_by_role("link", name="My requests").click()
    row = dave.locator("table.list tbody tr", has=dave.locator(f'a[href="/ui/tasks/{task_id}"]'))
    expect(row).to_contain_text("approved")
    for page in (alice, carol, dave):
        page.context.close()


def test_a_callback_that_did_not_start_here_signs_nobody_in(browser: Any, deploys: Deployment) -> None:
    page = browser.new_context(base_url=deploys.url).new_page()
    page.goto("/ui/login")
    page.goto("/ui/login/oidc/callback?state=forged&code=stolen")
    expect(page.get_by_role("alert")).to_have_text("This sign-in did not start here, or took too long. Sign in again.")
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.context.close()
