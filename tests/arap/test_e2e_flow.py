"""The ARAP flow end to end over HTTP (issue: "Done when"): a requestable denial, a
submission, reviewers approving through the reviewer API, and a re-evaluation that allows;
and the ways it must fail."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

from tests.arap.conftest import Flow

PROBLEM = "urn:openid:authzen:access-request:error:"


def approve_all(flow: Flow, task_id: str, *reviewers: str) -> None:
    for reviewer in reviewers:
        response = flow.review(reviewer, task_id, "approve")
        assert response.status_code == 200, response.text


def test_denial_submission_approval_reevaluation_allows(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    decision = evaluated["decision"]
    assert decision["decision"] is False and "access_request" in decision["context"]

    submitted = flow.submit(flow.submission(evaluated, context={"env": "prod", "ticket": "CHG-1"}))
    assert submitted.status_code == 202, submitted.text
    task = submitted.json()["task"]
    assert submitted.headers["location"] == task["status_endpoint"]
    assert task["status"] == "pending" and task["progress"]["current_step"] == 1
    assert "awaiting" not in task["progress"]  # approver identities stay private (AR-93)

    # Alice (a manager) approves the first step; the task waits for the owner.
    inbox = flow.http.get("/reviewer/v1/tasks", headers=flow.credentials.headers("alice")).json()["tasks"]
    assert task["id"] in [t["id"] for t in inbox]
    approve_all(flow, task["id"], "alice")
    assert flow.status(task["id"]).json()["task"]["progress"]["current_step"] == 2
    # Carol owns billing and approves the last step.
    approve_all(flow, task["id"], "carol")

    answer = flow.status(task["id"]).json()
    assert answer["task"]["status"] == "approved"
    approval = answer["result"]["approval"]
    assert answer["result"]["mode"] == "reevaluate" and approval["id"].startswith("apr_")
    assert "alice" not in json.dumps(answer) and "carol" not in json.dumps(answer)  # AR-93

    allowed = flow.reevaluate(evaluated, approval)
    assert allowed["decision"] is True
    assert allowed["context"]["approval"] == {"id": approval["id"], "approved_until": approval["approved_until"]}


def test_the_subject_may_not_approve_its_own_request(flow: Flow) -> None:
    evaluated = flow.evaluate("alice")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    refused = flow.review("alice", task["id"], "approve")
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:arop:reviewer:error:self_approval"
    # Bob (another manager) may; the task moves on, still pending.
    approve_all(flow, task["id"], "bob")
    assert flow.status(task["id"]).json()["task"]["status"] == "pending"


def test_separation_of_duties_across_steps(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    approve_all(flow, task["id"], "carol")  # carol as a manager…
    refused = flow.review("carol", task["id"], "approve")  # …may not also approve as the owner
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:arop:reviewer:error:separation_of_duties"


def _forge(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["subject"] = {"type": "User", "id": "alice"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_forged_binding_token_is_refused(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    body = flow.submission(evaluated)
    body["subject"] = {"type": "User", "id": "alice"}
    body["denial"]["binding_token"] = _forge(body["denial"]["binding_token"])
    body["denial"].pop("evaluation_id")
    refused = flow.submit(body)
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == PROBLEM + "invalid_denial_binding"


def test_tampered_approval_state_is_denied(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    task = flow.submit(flow.submission(evaluated)).json()["task"]
    approve_all(flow, task["id"], "bob", "carol")
    approval = flow.status(task["id"]).json()["result"]["approval"]
    header, payload, signature = approval["state"].split(".")
    tampered = {**approval, "state": f"{header}.{payload}.{signature[:-4]}AAAA"}
    denied = flow.reevaluate(evaluated, tampered)
    assert denied["decision"] is False
    assert denied["context"]["reason"] == "approval_unverifiable"
    assert denied["context"]["next_action"] == "none"
    assert flow.reevaluate(evaluated, approval)["decision"] is True


def test_concurrent_submissions_under_one_idempotency_key_make_one_task(flow: Flow) -> None:
    evaluated = flow.evaluate("dave")
    body = flow.submission(evaluated)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: flow.submit(body, key="idem-concurrent-1"), range(6)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({a.json()["task"]["id"] for a in answers}) == 1
    changed = flow.submit({**body, "context": {"env": "prod", "ticket": "other"}}, key="idem-concurrent-1")
    assert changed.status_code == 409 and changed.json()["type"] == PROBLEM + "duplicate_request"


def test_expired_binding_token_is_refused(strict_flow: Flow) -> None:
    """hint_ttl = 1, clock_skew = 0 (the `strict` server of conftest.py)."""
    evaluated = strict_flow.evaluate("dave")
    time.sleep(2.1)
    refused = strict_flow.submit(strict_flow.submission(evaluated))
    assert refused.status_code == 410, refused.text
    assert refused.json()["type"] == PROBLEM + "expired_denial"
