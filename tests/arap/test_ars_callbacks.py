"""Contract tests of completion callbacks over real HTTP (spec/arap.md §13, D-ARAP-12): the
endpoint checks at submission (AR-77) and the signed notification a real HTTPS receiver gets
(AR-78, AR-79); on SQLite and on PostgreSQL.

The caller `pep` has the session's receiver (https://127.0.0.1:<port>/, 127.0.0.0/8
allowlisted, its CA trusted) and INTERNAL_CALLBACK registered; see tests/arap/conftest.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles.arap.callbacks import verify_callback_signature
from tests.arap.conftest import CALLBACK_SECRET, INTERNAL_CALLBACK, Callbacks, Flow, assert_problem

WINDOW = timedelta(minutes=5)


def with_callback(flow: Flow, callback: dict[str, Any], caller: str = "pep", service: str = "billing") -> dict[str, Any]:
    return flow.submission(flow.evaluate("dave", service, caller=caller), callback=callback)


def notified(flow: Flow, callbacks: Callbacks, task: dict[str, Any], status: str, state: str | None = None) -> None:
    """The receiver got exactly one callback for `task`: `status`, the echoed `state`, no result
    (a notification, AR-80), signed with the caller's secret (AR-78)."""
    [received] = callbacks.wait_for(task["id"])
    expected: dict[str, Any] = {"task": {"id": task["id"], "status": status, "status_endpoint": task["status_endpoint"]}}
    if state is not None:
        expected["state"] = state
    assert json.loads(received.body) == expected
    assert received.method == "POST" and received.headers["content-type"] == "application/json"
    signature = received.headers["arop-signature"]
    now = datetime.now(UTC)
    assert verify_callback_signature(CALLBACK_SECRET.encode(), signature, received.body, now=now, window=WINDOW)
    assert not verify_callback_signature(b"another secret", signature, received.body, now=now, window=WINDOW)
    assert not verify_callback_signature(CALLBACK_SECRET.encode(), signature, received.body + b" ", now=now, window=WINDOW)


def test_ar_77_an_unregistered_callback_endpoint_is_refused(flow: Flow, callbacks: Callbacks) -> None:
    port = callbacks.receiver.port
    for endpoint in (
        "https://pep.example.net/arap-callback",  # not registered for the caller
        f"https://127.0.0.2:{port}/arap-callback",  # another host, though allowlisted
        f"http://127.0.0.1:{port}/arap-callback",  # not https
        f"https://user:pw@127.0.0.1:{port}/arap-callback",  # userinfo
        callbacks.url("arap-callback#fragment"),
        "not a url",
    ):
        assert_problem(flow.submit(with_callback(flow, {"endpoint": endpoint})), 400, "about:blank")
    # A caller with no registration (and no secret) may not ask for callbacks at all.
    body = with_callback(flow, {"endpoint": callbacks.url()}, caller="other_pep")
    assert_problem(flow.submit(body, caller="other_pep"), 400, "about:blank")


def test_ar_77_an_internal_address_is_refused_unless_allowlisted(flow: Flow) -> None:
    refused = flow.submit(with_callback(flow, {"endpoint": INTERNAL_CALLBACK}))
    assert "internal address" in assert_problem(refused, 400, "about:blank")["detail"]


def test_ar_78_ar_79_an_approval_is_notified_with_an_hmac_signed_callback(flow: Flow, callbacks: Callbacks) -> None:
    task = flow.submit(with_callback(flow, {"endpoint": callbacks.url("approved"), "state": "c1x9"})).json()["task"]
    flow.approve(task["id"], "alice")
    time.sleep(0.5)
    assert callbacks.for_task(task["id"]) == []  # nothing before the task is terminal
    flow.approve(task["id"], "carol")
    notified(flow, callbacks, task, "approved", state="c1x9")
    assert callbacks.for_task(task["id"])[0].path == "/approved"
    # The status endpoint stays authoritative: the result is there (AR-80).
    assert flow.status(task["id"]).json()["result"]["approval"]["id"].startswith("apr_")
    assert "callback.delivered" in [e.kind for e in flow.audit_events(task["id"])]


def test_ar_79_without_events_every_terminal_status_is_notified(flow: Flow, callbacks: Callbacks) -> None:
    cancelled = flow.submit(with_callback(flow, {"endpoint": callbacks.url()})).json()["task"]
    assert flow.cancel(cancelled).status_code == 200
    notified(flow, callbacks, cancelled, "cancelled")

    denied = flow.submit(with_callback(flow, {"endpoint": callbacks.url()})).json()["task"]
    assert flow.review("alice", denied["id"], "deny", reason="freeze").status_code == 200
    notified(flow, callbacks, denied, "denied")

    bundle = {**flow.bundle("sandbox", "billing"), "callback": {"endpoint": callbacks.url(), "state": "b"}}
    partial = flow.submit(bundle).json()["task"]
    assert flow.cancel(partial).json()["task"]["status"] == "partial"
    notified(flow, callbacks, partial, "partial", state="b")

    auto = flow.submit(with_callback(flow, {"endpoint": callbacks.url()}, service="sandbox"))
    assert auto.status_code == 201
    notified(flow, callbacks, auto.json()["task"], "approved")


def test_ar_79_only_the_subscribed_events_are_notified(flow: Flow, callbacks: Callbacks) -> None:
    subscription = {"endpoint": callbacks.url(), "events": ["denied", "some_future_event"]}
    approved = flow.submit(with_callback(flow, subscription)).json()["task"]
    flow.approve(approved["id"], "alice", "carol")
    denied = flow.submit(with_callback(flow, subscription)).json()["task"]
    assert flow.review("alice", denied["id"], "deny", reason="freeze").status_code == 200
    notified(flow, callbacks, denied, "denied")
    assert callbacks.for_task(approved["id"]) == []  # queued with the same worker round or earlier
