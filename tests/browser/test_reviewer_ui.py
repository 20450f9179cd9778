"""The reviewer UI in a real browser (issue 6): sign-in, live inbox, approve and the PEP's
re-evaluation, deny, an ineligible reviewer, CSRF, administration, and screenshots for docs/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, SCREENSHOTS, AgentsDeployment, sign_in

pytestmark = pytest.mark.integration


def test_sign_in_refuses_a_wrong_password_then_signs_in_and_out(browser: Any, agents: AgentsDeployment) -> None:
    context = browser.new_context(base_url=agents.url)
    page = context.new_page()
    page.goto("/ui/tasks/nothing")  # a deep link survives sign-in (a local path only)
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Ftasks%2Fnothing$"))
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
    cookie = next(c for c in context.cookies() if c["name"] == "__Host-arop_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="No such request")).to_be_visible()
    signed_in = next(c for c in context.cookies() if c["name"] == "__Host-arop_session")
    assert signed_in["value"] != cookie["value"]  # a new session at sign-in: no fixation
    page.goto("/ui/")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    context.close()


def test_a_new_request_appears_live_and_its_approval_lets_the_pep_reevaluate_to_allow(browser: Any, agents: AgentsDeployment) -> None:
    page = sign_in(browser, agents.url, "alice")
    awaiting = int(page.get_by_test_id("awaiting").inner_text())
    request, task_id = agents.pep.request_buy(5000, "Rebalance after the Q4 dividend")
    # No reload: the server-sent event makes the inbox fetch its list again.
    card = page.locator("li.task", has=page.locator(f'a[href="/ui/tasks/{task_id}"]'))
    expect(card).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("awaiting")).to_have_text(str(awaiting + 1))
    expect(card).to_contain_text("Rebalance after the Q4 dividend")
    page.screenshot(path=SCREENSHOTS / "inbox-desktop.png", full_page=True)
    card.get_by_role("link").click()
    expect(page.get_by_test_id("subject")).to_have_text("Agent trader-7")
    expect(page.get_by_test_id("granted")).to_contain_text("buy on Portfolio alice-main")
    page.screenshot(path=SCREENSHOTS / "detail-desktop.png", full_page=True)
    page.get_by_label("Approve for").select_option(index=1)  # 1 hour, not the most allowed
    page.get_by_label("Comment (optional)").fill("Within her usual range")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_test_id("confirmation")).to_have_text("You approved this request: it is approved.")
    expect(page.get_by_test_id("status")).to_have_text("approved")
    answer = agents.pep.task(task_id)
    approval = answer["result"]["approval"]
    assert answer["task"]["status"] == "approved"
    allowed = agents.pep.reevaluate(request, approval)
    assert allowed["decision"] is True
    # 1 hour as chosen, not the day the workflow would allow.
    from profiles.arap.model import parse_instant

    assert (parse_instant(approval["approved_until"]) - parse_instant(approval["approved_at"])).total_seconds() <= 3600
    page.context.close()


def test_a_denial_with_its_reason_reaches_the_pep(browser: Any, agents: AgentsDeployment) -> None:
    _, task_id = agents.pep.request_buy(7000, "Buy the dip")
    page = sign_in(browser, agents.url, "alice")
    page.goto(f"/ui/tasks/{task_id}")
    page.get_by_role("button", name="Deny").click()  # the reason is required: the browser asks for it
    expect(page.get_by_test_id("status")).to_have_text("pending")
    page.get_by_label("Reason for denying").fill("Too much in one go")
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_test_id("confirmation")).to_contain_text("You denied this request.")
    expect(page.locator("ol.steps")).to_contain_text("User alice denied")
    expect(page.locator("ol.steps")).to_contain_text("“Too much in one go”")
    assert agents.pep.task(task_id)["task"]["status"] == "denied"
    page.context.close()


def test_a_repeated_approval_lands_on_the_same_confirmation(browser: Any, agents: AgentsDeployment) -> None:
    _, task_id = agents.pep.request_buy(3000, "Top up the savings account")
    page = sign_in(browser, agents.url, "alice")
    page.goto(f"/ui/tasks/{task_id}")
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    # The same form sent twice, as a double click without the page's script would.
    answers = [page.request.post(f"/ui/tasks/{task_id}/approve", form={"csrf_token": csrf, "step": "1"}) for _ in range(2)]
    assert [a.url.endswith(f"/ui/tasks/{task_id}?done=approved") for a in answers] == [True, True]
    assert all(a.status == 200 and "You approved this request" in a.text() for a in answers)
    assert agents.pep.task(task_id)["task"]["status"] == "approved"
    page.context.close()


def test_an_ineligible_reviewer_neither_sees_nor_decides_the_request(browser: Any, agents: AgentsDeployment) -> None:
    _, task_id = agents.pep.request_buy(6000, "Alice's trade")
    page = sign_in(browser, agents.url, "bob")  # bob owns another portfolio
    expect(page.locator(f'a[href="/ui/tasks/{task_id}"]')).to_have_count(0)
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    page.goto(f"/ui/tasks/{task_id}")
    expect(page.get_by_role("heading", name="No such request")).to_be_visible()
    # Crafted: bob's own valid session and CSRF token, posted straight at the task.
    for verb, form in (("approve", {"step": "1"}), ("deny", {"reason": "mine now", "step": "1"})):
        answer = page.request.post(f"/ui/tasks/{task_id}/{verb}", form={"csrf_token": csrf, **form})
        assert answer.status == 404, answer.status
    assert agents.pep.task(task_id)["task"]["status"] == "pending"
    page.context.close()


def test_csrf_a_forged_post_decides_nothing(browser: Any, agents: AgentsDeployment, tmp_path: Any) -> None:
    _, task_id = agents.pep.request_buy(4000, "Forgery target")
    page = sign_in(browser, agents.url, "alice")
    # Same site, no token (a script that got the cookie sent but cannot read the page).
    for form in ({"step": "1"}, {"step": "1", "csrf_token": "guessed"}):
        answer = page.request.post(f"/ui/tasks/{task_id}/approve", form=form)
        assert answer.status == 403 and "Form refused" in answer.text()
    # Another site's page that posts a form to the task as soon as it loads.
    evil = page.context.new_page()
    evil.route("http://evil.test/", lambda route: route.fulfill(content_type="text/html", body=(
        f'<form id="f" method="post" action="{agents.url}/ui/tasks/{task_id}/approve"><input name="step" value="1"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )))
    evil.goto("http://evil.test/")
    # The post carried no session (SameSite=Lax): it asked for a sign-in, and the sign-in page,
    # seeing alice's session on a top-level visit, sent her to her inbox. Nothing was decided.
    expect(evil.get_by_role("heading", name="Awaiting your decision")).to_be_visible()
    assert agents.pep.task(task_id)["task"]["status"] == "pending"
    page.goto(f"/ui/tasks/{task_id}")
    expect(page.get_by_test_id("status")).to_have_text("pending")
    page.context.close()


def test_administrators_see_every_task_verify_the_audit_log_and_cancel(browser: Any, agents: AgentsDeployment) -> None:
    _, task_id = agents.pep.request_buy(9000, "To be cancelled")
    page = sign_in(browser, agents.url, "carol")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_test_id("audit-result")).to_contain_text("Audit log intact")
    page.get_by_label("Search").fill(task_id)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Trade approval").click()
    expect(page.get_by_test_id("refusal")).to_have_text("You are not an approver of the current step.")
    page.get_by_label("Cancel as administrator: reason").fill("Duplicate of another request")
    page.get_by_role("button", name="Cancel the request").click()
    expect(page.get_by_test_id("status")).to_have_text("cancelled")
    assert agents.pep.task(task_id)["task"]["status"] == "cancelled"
    page.context.close()


def test_not_an_administrator_is_refused_the_admin_pages(browser: Any, agents: AgentsDeployment) -> None:
    page = sign_in(browser, agents.url, "alice")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/ui/admin")
    expect(page.get_by_role("heading", name="Administrators only")).to_be_visible()
    page.context.close()


def test_screenshots_on_a_phone(browser: Any, agents: AgentsDeployment) -> None:
    _, task_id = agents.pep.request_buy(4500, "Monthly savings plan")
    page = sign_in(browser, agents.url, "alice", viewport=PHONE)
    expect(page.locator(f'a[href="/ui/tasks/{task_id}"]')).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "inbox-phone.png", full_page=True)
    page.goto(f"/ui/tasks/{task_id}")
    # Usable on a phone: nothing wider than the screen, the decision reachable by keyboard.
    too_wide = page.evaluate(f"[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > {PHONE['width']}).map(e => e.tagName + '.' + e.className).slice(0, 5)")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], too_wide
    page.get_by_label("Approve for").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Comment (optional)")).to_be_focused()
    page.screenshot(path=SCREENSHOTS / "detail-phone.png", full_page=True)
    page.context.close()
