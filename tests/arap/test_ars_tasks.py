"""Contract tests of the task handle over real HTTP (spec/arap.md §9-§12, §16-§18): status,
bundle aggregation, cancellation, expiry, who may do what with a task, audit, self-approval,
and the reviewer API's own rules; on SQLite and on PostgreSQL.

Sandbox services are auto-approved by the bundle's workflow (per item), which is how a bundle
gets items in different terminal states.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles.arap.model import format_instant
from tests.arap.conftest import Callbacks, Flow, assert_problem
from tests.test_cli import arop

REVIEWER_PROBLEM = "urn:arop:reviewer:error:"


def approval_of(item_or_answer: dict[str, Any]) -> dict[str, Any]:
    result = item_or_answer["result"]
    assert result["mode"] == "reevaluate", result
    return result["approval"]  # type: ignore[no-any-return]


def submitted_bundle(flow: Flow, *services: str, status: int = 202) -> dict[str, Any]:
    response = flow.submit(flow.bundle(*services))
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def item_statuses(answer: dict[str, Any]) -> list[str]:
    return [item["status"] for item in answer["task"]["items"]]


# -- AR-53, AR-57, AR-58: statuses and results ------------------------------------------------


def test_ar_53_a_bundle_is_pending_while_an_item_is_pending(flow: Flow) -> None:
    answer = submitted_bundle(flow, "sandbox", "billing")
    assert answer["task"]["status"] == "pending"
    assert item_statuses(answer) == ["approved", "pending"]
    sandbox, billing = answer["task"]["items"]
    assert approval_of(sandbox)["id"].startswith("apr_")
    assert "result" not in billing
    assert "result" not in answer  # a bundle's approvals are per item (AR-54)
    assert flow.status(answer["task"]["id"]).json() == answer


def test_ar_53_ar_61_cancelling_a_half_finished_bundle_makes_it_partial(flow: Flow) -> None:
    answer = submitted_bundle(flow, "sandbox", "billing")
    granted = approval_of(answer["task"]["items"][0])

    cancelled = flow.cancel(answer["task"])
    assert cancelled.status_code == 200, cancelled.text
    task = cancelled.json()["task"]
    assert task["status"] == "partial"
    assert [i["status"] for i in task["items"]] == ["approved", "cancelled"]
    assert approval_of(task["items"][0]) == granted  # terminal items stay as they were
    assert "result" not in task["items"][1] and "result" not in cancelled.json()
    assert flow.status(task["id"]).json() == cancelled.json()
    assert_problem(flow.cancel(answer["task"]), 409, "invalid_task_state")


def test_ar_53_a_denied_half_finished_bundle_is_partial(flow: Flow) -> None:
    answer = submitted_bundle(flow, "sandbox", "billing")
    assert flow.review("alice", answer["task"]["id"], "deny", reason="not_this_week").status_code == 200
    polled = flow.status(answer["task"]["id"]).json()
    assert polled["task"]["status"] == "partial"
    assert item_statuses(polled) == ["approved", "denied"]


def test_ar_58_an_approved_bundle_carries_a_result_in_each_item(flow: Flow) -> None:
    answer = submitted_bundle(flow, "sandbox", "billing")
    flow.approve(answer["task"]["id"], "alice", "carol")
    polled = flow.status(answer["task"]["id"]).json()
    assert polled["task"]["status"] == "approved" and item_statuses(polled) == ["approved", "approved"]
    assert "result" not in polled
    sandbox, billing = (approval_of(item) for item in polled["task"]["items"])
    assert sandbox["id"] != billing["id"]
    # AR-65: each item is re-evaluated with its own approval, which covers that item only.
    assert flow.reevaluate(flow.evaluate("dave", "billing"), billing)["decision"] is True
    assert flow.reevaluate(flow.evaluate("dave", "sandbox"), sandbox)["decision"] is True
    assert flow.reevaluate(flow.evaluate("dave", "billing"), sandbox)["decision"] is False


def test_ar_51_a_bundle_approved_at_once_is_201(flow: Flow) -> None:
    answer = submitted_bundle(flow, "sandbox", "scratch", status=201)
    assert answer["task"]["status"] == "approved" and item_statuses(answer) == ["approved", "approved"]
    assert all(approval_of(item)["state"] for item in answer["task"]["items"])


def test_ar_57_a_terminal_task_never_changes(flow: Flow) -> None:
    approved = flow.request(service="sandbox")
    denied = flow.request()
    assert flow.review("alice", denied["task"]["id"], "deny", reason="freeze").status_code == 200
    cancelled = flow.request()
    assert flow.cancel(cancelled["task"]).status_code == 200

    for answer in (approved, denied, cancelled):
        task = answer["task"]
        before = flow.status(task["id"]).json()
        assert before["task"]["status"] in ("approved", "denied", "cancelled")
        assert_problem(flow.cancel(task), 409, "invalid_task_state")
        assert_problem(flow.cancel(task, method="DELETE"), 409, "invalid_task_state")
        for reviewer in ("alice", "carol"):
            assert_problem(flow.review(reviewer, task["id"], "approve"), 409, "invalid_task_state")
            assert_problem(flow.review(reviewer, task["id"], "deny", reason="late"), 409, "invalid_task_state")
        assert flow.status(task["id"]).json() == before


def test_ar_88_not_approved_before_the_last_step(flow: Flow) -> None:
    task = flow.request()["task"]
    flow.approve(task["id"], "alice")
    polled = flow.status(task["id"]).json()
    assert polled["task"]["status"] == "pending" and "result" not in polled
    assert polled["task"]["progress"] == {"current_step": 2, "total_steps": 2, "step_name": "owner"}
    flow.approve(task["id"], "carol")
    assert flow.status(task["id"]).json()["task"]["status"] == "approved"


def test_ar_87_approved_until_is_capped_by_max_approval_and_requested_until(flow: Flow) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    capped = approval_of(flow.request(service="sandbox"))
    until = datetime.fromisoformat(capped["approved_until"])
    assert before + timedelta(hours=8) <= until <= datetime.now(UTC) + timedelta(hours=8)  # max_approval
    requested = format_instant(before + timedelta(hours=1))
    narrowed = approval_of(flow.request(service="sandbox", requested_access={"requested_until": requested}))
    assert narrowed["approved_until"] == requested


# -- AR-59: expiry ----------------------------------------------------------------------------


def test_ar_59_an_expired_task_answers_task_expired(short_flow: Flow, callbacks: Callbacks) -> None:
    """request_ttl = 2 s, retention = 4 s: a pending task expires (its callback says so) and
    its handle answers 410 at once; a terminal one stays retrievable for the retention."""
    flow = short_flow
    pending = flow.request(callback={"endpoint": callbacks.url("ar-59"), "state": "s59"})["task"]
    finished = flow.request()["task"]
    assert flow.cancel(finished).status_code == 200
    cancelled_at = time.monotonic()
    assert flow.status(pending["id"]).json()["task"]["status"] == "pending"

    time.sleep(2.3)
    assert_problem(flow.status(pending["id"]), 410, "task_expired")
    assert_problem(flow.cancel(pending), 410, "task_expired")
    [received] = callbacks.wait_for(pending["id"])
    assert json.loads(received.body) == {"state": "s59", "task": {"id": pending["id"], "status": "expired", "status_endpoint": pending["status_endpoint"]}}
    assert flow.status(finished["id"]).json()["task"]["status"] == "cancelled"

    time.sleep(max(0.0, cancelled_at + 4.1 - time.monotonic()))
    assert_problem(flow.status(finished["id"]), 410, "task_expired")


# -- AR-60, AR-61: cancellation ---------------------------------------------------------------


def test_ar_60_ar_61_cancel_by_post_to_links_cancel(flow: Flow) -> None:
    task = flow.request()["task"]
    assert task["links"]["cancel"] == f"{task['status_endpoint']}/cancel"
    cancelled = flow.cancel(task, reason="no_longer_needed", comment="the change was withdrawn")
    assert cancelled.status_code == 200, cancelled.text
    answer = cancelled.json()
    assert answer["task"]["id"] == task["id"] and answer["task"]["status"] == "cancelled"
    assert answer["task"]["status_endpoint"] == task["status_endpoint"]
    assert "result" not in answer
    assert flow.status(task["id"]).json()["task"]["status"] == "cancelled"
    assert_problem(flow.cancel(task), 409, "invalid_task_state")
    [audit] = [e for e in flow.audit_events(task["id"]) if e.kind == "task.cancelled"]
    assert (audit.actor, audit.data["reason"], audit.data["comment"]) == ("pep", "no_longer_needed", "the change was withdrawn")


def test_ar_60_ar_61_cancel_by_delete_on_the_handle(flow: Flow) -> None:
    task = flow.request()["task"]
    cancelled = flow.cancel(task, method="DELETE")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task"]["status"] == "cancelled"
    assert_problem(flow.cancel(task, method="DELETE"), 409, "invalid_task_state")
    assert_problem(flow.cancel(task), 409, "invalid_task_state")


# -- AR-55, AR-62, AR-91: who may do what with a task ---------------------------------------


def test_ar_62_ar_91_reading_a_task_does_not_allow_cancelling_it(flow: Flow) -> None:
    task = flow.request()["task"]
    assert flow.status(task["id"], caller="observer").status_code == 200
    assert_problem(flow.cancel(task, caller="observer"), 403, "about:blank")
    assert_problem(flow.cancel(task, caller="observer", method="DELETE"), 403, "about:blank")
    assert flow.status(task["id"]).json()["task"]["status"] == "pending"


def test_ar_91_a_task_for_another_subject_is_unknown_task(flow: Flow) -> None:
    daves = flow.request()["task"]
    for response in (
        flow.status(daves["id"], caller="bob_only"),
        flow.cancel(daves, caller="bob_only"),
        flow.cancel(daves, caller="bob_only", method="DELETE"),
    ):
        assert_problem(response, 404, "unknown_task")
    assert flow.status(daves["id"]).json()["task"]["status"] == "pending"
    bobs = flow.request(subject="bob", caller="bob_only")["task"]
    assert flow.status(bobs["id"], caller="bob_only").status_code == 200


def test_ar_91_only_the_requester_receives_the_approval(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    flow.approve(task["id"], "alice", "carol")
    approval = approval_of(flow.status(task["id"]).json())
    for caller in ("other_pep", "observer"):
        seen = flow.status(task["id"], caller=caller).json()
        assert seen["task"]["status"] == "approved" and "result" not in seen
    # The approval is bound to its requester: presented by another PEP it does not apply.
    assert flow.reevaluate(evaluated, approval, caller="other_pep")["decision"] is False
    assert flow.reevaluate(evaluated, approval)["decision"] is True


def test_ar_55_another_authorized_caller_may_poll_and_cancel(flow: Flow) -> None:
    task = flow.request()["task"]
    assert flow.status(task["id"], caller="other_pep").json()["task"]["status"] == "pending"
    assert flow.cancel(task, caller="other_pep").json()["task"]["status"] == "cancelled"


def test_ar_90_task_operations_require_an_authenticated_caller(flow: Flow) -> None:
    task = flow.request()["task"]
    for response in (
        flow.http.get(task["status_endpoint"]),
        flow.http.post(task["links"]["cancel"]),
        flow.http.delete(task["status_endpoint"]),
        flow.http.get(task["status_endpoint"], headers={"Authorization": "Bearer " + "x" * 43}),
    ):
        assert_problem(response, 401, "about:blank")
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert flow.status(task["id"]).json()["task"]["status"] == "pending"


# -- AR-89: audit -----------------------------------------------------------------------------


def test_ar_89_the_audit_log_reconstructs_request_decisions_and_completion(flow: Flow) -> None:
    body = flow.submission(flow.evaluate("dave", ticket="CHG-89"), client={"id": "deploy-portal"})
    task = flow.submit(body).json()["task"]
    assert flow.review("alice", task["id"], "approve", comment="fine by me").status_code == 200
    assert flow.review("carol", task["id"], "approve").status_code == 200
    approval = approval_of(flow.status(task["id"]).json())

    verified = arop("audit", "verify", env={"AROP_STORE__URL": str(flow.store_url)})
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit log intact")

    events = flow.audit_events(task["id"])
    assert [(e.kind, e.actor) for e in events] == [
        ("access_request.submitted", "pep"),
        ("task.step_approved", "alice"),
        ("task.step_approved", "carol"),
        ("task.approved", "carol"),
    ]
    submitted, first, second, completed = (e.data for e in events)
    # The request and the denial it was based on.
    assert submitted["subject"] == body["subject"] and submitted["context"] == body["context"]
    assert submitted["items"] == [{"resource": body["resource"], "action": body["action"], "evaluation_id": body["denial"]["evaluation_id"]}]
    assert submitted["denials"] == [body["denial"]]
    assert (submitted["template"], submitted["client"], submitted["status"]) == ("change_approval", body["client"], "pending")
    # Who decided what, at which step.
    assert (first["step"], first["approver"], first["comment"]) == (1, {"type": "User", "id": "alice"}, "fine by me")
    assert (second["step"], second["approver"]) == (2, {"type": "User", "id": "carol"})
    # The completion and the approval it produced.
    assert completed["status"] == "approved"
    assert completed["approvals"] == [approval["id"]] and completed["approved_until"] == approval["approved_until"]


# -- AR-93: no approver identities to the PEP ----------------------------------------------


REVIEWER_TRACES = re.compile(r"alice|carol|fine-by-alice|no-from-carol", re.IGNORECASE)


def pep_view(answer: dict[str, Any]) -> str:
    """A PEP-facing answer as text, with a signed approval state decoded: the PEP can read it."""
    text = json.dumps(answer)
    for token in re.findall(r"eyJ[\w-]*\.([\w-]+)\.[\w-]+", text):
        text += base64.urlsafe_b64decode(token + "==").decode()
    return text


def test_ar_93_no_reviewer_identity_reaches_the_pep(flow: Flow) -> None:
    submitted = flow.request()
    task_id = submitted["task"]["id"]
    seen = [submitted]
    assert flow.review("alice", task_id, "comments", comment="fine-by-alice").status_code == 200
    assert flow.review("alice", task_id, "approve", comment="fine-by-alice").status_code == 200
    seen.append(flow.status(task_id).json())
    assert flow.review("carol", task_id, "approve").status_code == 200
    seen.append(flow.status(task_id).json())
    assert seen[-1]["task"]["status"] == "approved"

    denied = flow.request()
    assert flow.review("carol", denied["task"]["id"], "deny", reason="no-from-carol").status_code == 200
    seen += [flow.status(denied["task"]["id"]).json(), flow.status(task_id, caller="observer").json()]
    cancelled = flow.request()
    flow.approve(cancelled["task"]["id"], "alice")
    seen.append(flow.cancel(cancelled["task"]).json())

    for answer in seen:
        assert not REVIEWER_TRACES.search(pep_view(answer)), answer
        assert "awaiting" not in answer["task"].get("progress", {})


# -- AR-96: self-approval and separation of duties ---------------------------------------------


def test_ar_96_the_subject_requester_and_actors_may_not_approve(flow: Flow) -> None:
    def refused(reviewer: str, task_id: str, why: str) -> None:
        response = flow.review(reviewer, task_id, "approve")
        assert response.status_code == 403 and response.json()["type"] == REVIEWER_PROBLEM + why, response.text

    # The subject: alice asks for herself.
    own = flow.request(subject="alice")["task"]
    refused("alice", own["id"], "self_approval")
    # The requester: the PEP `bob` submits for dave.
    requested = flow.request(caller="bob_pep")["task"]
    refused("bob", requested["id"], "self_approval")
    # The actor chain: carol's assistant acts for dave, on carol's behalf (a vouching caller).
    actor = {"id": "carol", "type": "user", "act": {"sub": "alice"}}
    evaluated = flow.evaluate("dave", caller="agent_gateway")
    chained = flow.submit(flow.submission(evaluated, client={"actor": actor}), caller="agent_gateway").json()["task"]
    refused("carol", chained["id"], "self_approval")
    refused("alice", chained["id"], "self_approval")
    flow.approve(chained["id"], "bob")
    refused("carol", chained["id"], "self_approval")  # the only owner: nobody may complete it
    for task in (own, requested, chained):
        assert flow.status(task["id"], caller="observer").json()["task"]["status"] == "pending"


def test_ar_96_separation_of_duties_across_steps(flow: Flow) -> None:
    task = flow.request()["task"]
    flow.approve(task["id"], "carol")  # carol, as a manager…
    detail = flow.detail("carol", task["id"]).json()  # …may not also approve as the owner
    assert (detail["can_decide"], detail["refusal"]) == (False, "separation_of_duties")
    inbox = flow.http.get("/reviewer/v1/tasks", headers=flow.credentials.headers("carol")).json()["tasks"]
    assert task["id"] not in [t["id"] for t in inbox]
    response = flow.review("carol", task["id"], "approve")
    assert response.status_code == 403 and response.json()["type"] == REVIEWER_PROBLEM + "separation_of_duties"
    assert flow.status(task["id"]).json()["task"]["progress"]["current_step"] == 2


# -- AR-98: handles -------------------------------------------------------------------------


def test_ar_98_task_handles_are_opaque_unguessable_and_need_credentials(flow: Flow) -> None:
    answers = [flow.request() for _ in range(4)]
    ids = [answer["task"]["id"] for answer in answers]
    assert len(set(ids)) == len(ids)
    for task_id in ids:
        assert re.fullmatch(r"arq_[A-Za-z0-9_-]{32}", task_id), task_id  # 192 random bits
    known = ids[0]
    approval_id = approval_of(flow.request(service="sandbox"))["id"]
    evaluation_id = flow.evaluate("dave")["decision"]["context"]["evaluation_id"]
    guesses = [known[:-1] + ("A" if known[-1] != "A" else "B"), "arq_1", "1", approval_id, evaluation_id, known.upper()]
    for guess in guesses:
        assert_problem(flow.status(guess), 404, "unknown_task")
    # No enumeration, and a leaked handle alone yields nothing.
    assert flow.http.get("/access/v1/requests", headers=flow.credentials.headers("pep")).status_code in (404, 405)
    assert flow.http.get(answers[0]["task"]["status_endpoint"]).status_code == 401


# -- The reviewer API's own rules -------------------------------------------------------------


def test_reviewer_deny_requires_a_reason(flow: Flow) -> None:
    task = flow.request()["task"]
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"comment": "no reason given"}):
        assert_problem(flow.review("alice", task["id"], "deny", **body), 400, "about:blank")
    assert flow.status(task["id"]).json()["task"]["status"] == "pending"
    denied = flow.review("alice", task["id"], "deny", reason="change_freeze", comment="after the release")
    assert denied.status_code == 200, denied.text
    [decision] = denied.json()["decisions"]
    assert (decision["decision"], decision["reason"], decision["comment"]) == ("deny", "change_freeze", "after the release")
    assert flow.status(task["id"]).json()["task"]["status"] == "denied"


def test_reviewer_approved_until_is_capped_and_the_narrowed_one_is_carried(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    now = datetime.now(UTC).replace(microsecond=0)
    for until in (now + timedelta(hours=9), now - timedelta(minutes=1), "next week"):
        text = until if isinstance(until, str) else format_instant(until)
        assert_problem(flow.review("alice", task["id"], "approve", approved_until=text), 400, "about:blank")
    assert flow.status(task["id"]).json()["task"]["progress"]["current_step"] == 1

    narrowed = format_instant(now + timedelta(hours=2))
    assert flow.review("alice", task["id"], "approve", approved_until=narrowed).status_code == 200
    flow.approve(task["id"], "carol")
    approval = approval_of(flow.status(task["id"]).json())
    assert approval["approved_until"] == narrowed
    allowed = flow.reevaluate(evaluated, approval)
    assert allowed["decision"] is True and allowed["context"]["approval"]["approved_until"] == narrowed


def test_reviewer_comment_appears_in_the_detail(flow: Flow) -> None:
    task = flow.request()["task"]
    assert_problem(flow.review("alice", task["id"], "comments", comment=" "), 400, "about:blank")
    commented = flow.review("alice", task["id"], "comments", comment="which release is this?")
    assert commented.status_code == 200, commented.text
    [comment] = flow.detail("carol", task["id"]).json()["comments"]
    assert (comment["by"], comment["text"]) == ({"type": "User", "id": "alice"}, "which release is this?")
    assert flow.status(task["id"]).json()["task"]["status"] == "pending"


def test_reviewer_not_involved_gets_unknown_task(flow: Flow) -> None:
    task = flow.request(subject="bob")["task"]  # dave is neither a manager nor billing's owner
    assert_problem(flow.detail("dave", task["id"]), 404, "unknown_task")
    for verb, body in (("approve", {}), ("deny", {"reason": "no"}), ("comments", {"comment": "hi"})):
        assert_problem(flow.review("dave", task["id"], verb, **body), 404, "unknown_task")
    assert_problem(flow.detail("alice", "arq_" + "A" * 32), 404, "unknown_task")
    assert flow.detail("alice", task["id"]).status_code == 200


def test_ar_99_the_ticket_link_shows_progress_but_no_approval_or_identities(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    ticket = task["links"]["ticket"]
    assert "/tickets/" in ticket and task["status_endpoint"] not in ticket
    path = ticket.removeprefix(str(flow.http.base_url).rstrip("/"))
    pending = flow.http.get(path)  # the URL is the credential: no Authorization
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending" and pending.json()["step"] == {"current": 1, "total": 2, "name": "manager"}
    for reviewer in ("alice", "carol"):
        assert flow.review(reviewer, task["id"], "approve").status_code == 200
    done = flow.http.get(path).json()
    assert done["status"] == "approved"
    text = json.dumps(done)
    assert "apr_" not in text and "alice" not in text and "carol" not in text
    # A ticket is bound to its task: another mac, or the mac of another task, is unknown.
    forged = path[: path.rindex("/") + 1] + "A" * 43
    assert_problem(flow.http.get(forged), 404, "unknown_task")


def test_ar_96_an_ineligible_decision_attempt_is_audited(flow: Flow) -> None:
    evaluated = flow.evaluate("alice")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    assert flow.review("alice", task["id"], "approve").status_code == 403
    [refused] = [e for e in flow.audit_events(task["id"]) if e.kind == "task.review_refused"]
    assert refused.actor == "alice"
    assert refused.data == {"verb": "approve", "refusal": "self_approval", "reviewer": {"type": "User", "id": "alice"}}


def test_ar_71_a_revoked_approval_no_longer_allows(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    for reviewer in ("alice", "carol"):
        assert flow.review(reviewer, task["id"], "approve").status_code == 200
    approval = flow.status(task["id"]).json()["result"]["approval"]
    assert flow.reevaluate(evaluated, approval)["decision"] is True

    path = f"/admin/v1/approvals/{approval['id']}/revoke"
    assert flow.http.post(path, headers=flow.credentials.headers("pep")).status_code == 403  # admins only
    revoked = flow.http.post(path, headers=flow.credentials.headers("operator"))
    assert revoked.status_code == 200, revoked.text
    denied = flow.reevaluate(evaluated, approval)
    assert denied["decision"] is False
    assert (denied["context"]["reason"], denied["context"]["next_action"]) == ("approval_expired", "request")
    assert "access_request" in denied["context"]  # next_action request comes with a fresh hint (AR-76)
    assert flow.http.post(path, headers=flow.credentials.headers("operator")).status_code == 409
    assert "approval.revoked" in [e.kind for e in flow.audit_events(task["id"])]


def test_ar_87_an_expired_task_cannot_be_approved_before_any_sweep(unswept_flow: Flow) -> None:
    """Found in review: expiry was left to the background worker, so a reviewer could approve
    a task past its expires_at that no sweep had expired yet, and the PEP got an approval."""
    flow = unswept_flow
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    assert flow.review("alice", task["id"], "approve").status_code == 200
    time.sleep(2.2)  # past the 2 s request_ttl; the worker sweeps only every 10 minutes
    refused = flow.review("carol", task["id"], "approve")
    assert_problem(refused, 409, "invalid_task_state")
    assert_problem(flow.status(task["id"]), 410, "task_expired")
    assert "task.approved" not in [e.kind for e in flow.audit_events(task["id"])]
    assert "task.expired" in [e.kind for e in flow.audit_events(task["id"])]
