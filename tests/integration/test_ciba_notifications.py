"""CIBA ping and push notifications are retried and never lost across restarts (the issue: "ping
(the sidecar calls the client notification endpoint with the client_notification_token when the
handle resolves); push (the sidecar notifies the AS, which mints and delivers). Notifications are
retried and never lost across restarts"; spec/arop.md §11.2 OP-51, OP-30; oauth-transports.md
§3.4 TX-26..TX-28).

The real service (`arop serve`) is killed with SIGKILL while a notification is owed, and started
again on the same store and port (tests/server.py `Restartable`); the AS, the client and its HTTPS
notification endpoint stay up. On SQLite and on PostgreSQL.

What makes it hold (services/oauth/ciba.py): the write that resolves a ping or push handle queues
its notification in the same transaction, and the access-request worker delivers it under a lease
with retries (services/access_requests/delivery.py). A kill before that write leaves the handle
pending and its task resolved, so the restarted worker's sweep (`notify_due`) makes it; a kill
after it leaves the delivery queued (or leased, until the lease runs out) for the restarted one.

Delivery is at least once. A ping is a hint (OP-30): a kill between the client's 2xx and the
record of it sends the same `{"auth_req_id"}` again, harmless to a client that redeems once. A push
is minted by the AS from the sidecar's notice: the sidecar issues the grant once (one
version-checked write, one `grant_id`) and every copy of the notice carries that same grant, so an
AS that is sent a notice again after such a kill can tell it by `grant_id`.

Retries are quick here: `callback_timeout = 3` (so a lease held by the killed process runs out
after 6 s), and the first retry after a refusal comes 2.5-5 s later (delivery.py FIRST_RETRY, with
jitter); the worker runs every 0.2 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from profiles.arop.ciba import AUTH_REQ_ID_CLAIM
from services.store import Store
from services.store.audit import stored_chain
from services.store.records import AuditEvent, ContinuationHandle
from tests.https_receiver import Received
from tests.oauth.conftest import claims_of, new_task
from tests.oauth.test_ciba_flow import Ciba, accepted, ciba_deployment
from tests.support import on_store, poll

CALLBACKS = "callback_timeout = 3\n"
RETRIED = 30  # seconds for a notification to be delivered after the restart: a lease and retries


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def installed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ciba]:
    with ciba_deployment(backend, tmp_path_factory.mktemp(f"ciba-crash-{backend}"), access_requests=CALLBACKS) as deployed:
        yield deployed


@pytest.fixture
def ciba(installed: Ciba) -> Ciba:
    """Each test starts with the service running and every endpoint up, answering at once."""
    deployed = installed.deployed
    assert deployed.server is not None
    if deployed.server.process.poll() is not None:  # a failed test left it killed
        deployed.restart()
    installed.receiver.default_status, installed.receiver.delay = 204, 0.0
    deployed.authorization_server.push_status = None
    return installed


def _stored(ciba: Ciba, task_id: str) -> tuple[list[AuditEvent], list[ContinuationHandle]]:
    """The task's audit events and its continuation handles, read from the service's store."""

    async def read(store: Store) -> tuple[list[AuditEvent], list[ContinuationHandle]]:
        events, _ = await stored_chain(store)
        return [e for e in events if e.task_id == task_id], await store.handles_for_task(task_id)

    assert ciba.deployed.service is not None and ciba.deployed.service.env is not None
    return on_store(ciba.deployed.service.env["AROP_STORE__URL"], read)


def delivered(ciba: Ciba, task_id: str, event: str) -> list[AuditEvent]:
    """The task's `callback.delivered` events of one kind of notification (AR-89: the store
    records a delivery and its audit event together)."""
    events, _ = _stored(ciba, task_id)
    return [e for e in events if e.kind == "callback.delivered" and e.data["event"] == event]


def assert_noticed_once(ciba: Ciba, task_id: str, event: str) -> ContinuationHandle:
    """One handle, resolved (noticed) once, its one notification delivered once: the restart
    neither lost it nor queued it again. Returns the handle."""
    events, handles = _stored(ciba, task_id)
    assert [e.kind for e in events].count("oauth.notify") == 1, [e.kind for e in events]
    assert len([e for e in events if e.kind == "callback.delivered" and e.data["event"] == event]) == 1
    assert not [e for e in events if e.kind == "callback.failed"]
    [handle] = handles
    return handle


def assert_ping(ping: Received, auth_req_id: str, token: str) -> None:
    """TX-26, exactly: the client's notification token as a bearer, `{"auth_req_id"}` as JSON."""
    assert ping.method == "POST"
    assert ping.headers["authorization"] == f"Bearer {token}"
    assert ping.headers["content-type"] == "application/json"
    assert json.loads(ping.body) == {"auth_req_id": auth_req_id}


def assert_pushed_tokens(push: Received, auth_req_id: str, token: str, amount: int) -> None:
    """TX-27: the tokens, with the client's bearer; the ID Token names the auth_req_id and
    carries at_hash; OP-55: the approved authorization_details."""
    assert push.headers["authorization"] == f"Bearer {token}"
    tokens = json.loads(push.body)
    assert {"auth_req_id", "access_token", "token_type", "expires_in", "id_token", "authorization_details"} <= set(tokens)
    assert tokens["auth_req_id"] == auth_req_id and tokens["authorization_details"][0]["amount"] == amount
    id_token = claims_of(tokens["id_token"])
    assert id_token[AUTH_REQ_ID_CLAIM] == auth_req_id and "at_hash" in id_token
    assert claims_of(tokens["access_token"])["sub"] == "alice"


def notices(ciba: Ciba, auth_req_id: str) -> list[dict[str, Any]]:
    """Every push notice of the sidecar for `auth_req_id` that the AS got: refused or acted on."""
    as_server = ciba.deployed.authorization_server
    every = list(as_server.refused) + [pushed["notice"] for pushed in list(as_server.pushed)]
    return [notice for notice in every if notice["auth_req_id"] == auth_req_id]


def assert_minted_from_one_grant(ciba: Ciba, auth_req_id: str, handle: ContinuationHandle) -> None:
    """Push: the sidecar issued the grant once; every notice the AS was sent, before the kill and
    after it, names that one grant, so the AS mints for one grant whatever it is sent again."""
    sent = notices(ciba, auth_req_id)
    assert sent and all(notice["outcome"] == "allow" for notice in sent)
    assert handle.state == "issued" and handle.grant_id is not None
    assert {notice["grant"]["grant_id"] for notice in sent} == {handle.grant_id}


# -- the endpoint is down when the approval comes in; the kill; the endpoint comes up ---------


def test_tx_26_op_30_ping_is_delivered_after_a_sigkill_and_the_client_redeems(ciba: Ciba) -> None:
    deployed, receiver = ciba.deployed, ciba.receiver
    client = ciba.register("trader-7", "ping")
    receiver.default_status = 503  # the client's notification endpoint is down
    before = deployed.inbox()
    auth_req_id = accepted(client.backchannel(5201, client_notification_token="cnt-crash-5201"))["auth_req_id"]
    task_id = new_task(deployed, before)
    deployed.review(task_id, "approve")
    assert poll(lambda: bool(ciba.notified("/ping", auth_req_id)), 10), "the ping was never attempted"
    deployed.kill()
    refused = len(ciba.notified("/ping", auth_req_id))
    deployed.restart()
    receiver.default_status = 204  # the endpoint comes up
    assert poll(lambda: bool(delivered(ciba, task_id, "ciba.ping")), RETRIED), "the ping was not delivered after the restart"
    pings = ciba.notified("/ping", auth_req_id)
    assert len(pings) > refused  # retried by the restarted service
    for ping in pings:  # at least once, and every attempt is the same notification
        assert_ping(ping, auth_req_id, "cnt-crash-5201")
    handle = assert_noticed_once(ciba, task_id, "ciba.ping")
    assert handle.state == "pending"  # notified; the client redeems
    issued = client.poll_ciba(auth_req_id)
    assert issued.status_code == 200, issued.text
    token = claims_of(issued.json()["access_token"])
    assert token["sub"] == "alice" and token["cnf"] == {"jkt": client.jkt}
    assert issued.json()["authorization_details"][0]["amount"] == 5201  # OP-55


def test_tx_27_op_51_push_tokens_are_minted_and_delivered_after_a_sigkill(ciba: Ciba) -> None:
    deployed = ciba.deployed
    as_server = deployed.authorization_server
    client = ciba.register("trader-7", "push")
    as_server.push_status = 503  # the AS's push endpoint is down
    before = deployed.inbox()
    auth_req_id = accepted(client.backchannel(5202, client_notification_token="cnt-crash-5202"), interval=False)["auth_req_id"]
    task_id = new_task(deployed, before)
    deployed.review(task_id, "approve")
    assert poll(lambda: bool(notices(ciba, auth_req_id)), 10), "the AS was never notified"
    deployed.kill()
    deployed.restart()
    as_server.push_status = None  # the AS's push endpoint comes up
    assert poll(lambda: bool(delivered(ciba, task_id, "ciba.push")), RETRIED), "the push was not delivered after the restart"
    [push] = ciba.notified("/push", auth_req_id)  # the AS acted on one notice: the one it accepted
    assert_pushed_tokens(push, auth_req_id, "cnt-crash-5202", 5202)
    assert claims_of(json.loads(push.body)["access_token"])["cnf"] == {"jkt": client.jkt}
    handle = assert_noticed_once(ciba, task_id, "ciba.push")
    assert_minted_from_one_grant(ciba, auth_req_id, handle)
    assert len(notices(ciba, auth_req_id)) >= 2  # refused before the kill, accepted after it
    refused = client.poll_ciba(auth_req_id)  # TX-24: still nothing to redeem for a push client
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")


def test_tx_28_push_denial_is_delivered_after_a_sigkill(ciba: Ciba) -> None:
    deployed = ciba.deployed
    as_server = deployed.authorization_server
    client = ciba.register("trader-7", "push")
    as_server.push_status = 503
    before = deployed.inbox()
    auth_req_id = accepted(client.backchannel(5203, client_notification_token="cnt-crash-5203"), interval=False)["auth_req_id"]
    task_id = new_task(deployed, before)
    deployed.review(task_id, "deny", reason="not now")
    assert poll(lambda: bool(notices(ciba, auth_req_id)), 10), "the AS was never notified"
    deployed.kill()
    deployed.restart()
    as_server.push_status = None
    assert poll(lambda: bool(delivered(ciba, task_id, "ciba.push")), RETRIED), "the denial was not delivered after the restart"
    [push] = ciba.notified("/push", auth_req_id)
    assert push.headers["authorization"] == "Bearer cnt-crash-5203"
    assert json.loads(push.body) == {"auth_req_id": auth_req_id, "error": "access_denied"}
    assert all(notice["outcome"] == "error" and "grant" not in notice for notice in notices(ciba, auth_req_id))
    assert assert_noticed_once(ciba, task_id, "ciba.push").state == "denied"


def test_op_30_tx_26_a_ping_in_flight_at_the_kill_is_sent_again_after_its_lease(ciba: Ciba) -> None:
    """The kill lands while the client holds its answer to the ping: the killed process had the
    delivery leased and never learnt the outcome, so the restarted one sends it again once the
    lease runs out. At least once: the client is pinged twice with the same notification (a
    hint, OP-30), and redeems once."""
    deployed, receiver = ciba.deployed, ciba.receiver
    client = ciba.register("trader-7", "ping")
    receiver.delay = 5.0  # longer than callback_timeout: the answer never reaches the service
    before = deployed.inbox()
    auth_req_id = accepted(client.backchannel(5205, client_notification_token="cnt-crash-5205"))["auth_req_id"]
    task_id = new_task(deployed, before)
    deployed.review(task_id, "approve")
    assert poll(lambda: bool(ciba.notified("/ping", auth_req_id)), 10), "the ping was never attempted"
    deployed.kill()
    receiver.delay = 0.0
    deployed.restart()
    assert poll(lambda: bool(delivered(ciba, task_id, "ciba.ping")), RETRIED), "the ping was not sent again after the restart"
    pings = ciba.notified("/ping", auth_req_id)
    assert len(pings) >= 2  # once before the kill, again after it
    for ping in pings:
        assert_ping(ping, auth_req_id, "cnt-crash-5205")
    assert_noticed_once(ciba, task_id, "ciba.ping")
    issued = client.poll_ciba(auth_req_id)
    assert issued.status_code == 200, issued.text
    again = client.poll_ciba(auth_req_id)  # the second ping gets the client nothing more
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


# -- the kill right after the approval is acknowledged ---------------------------------------


@pytest.mark.parametrize("mode", ["ping", "push"])
def test_op_51_tx_26_tx_27_a_kill_right_after_the_approval_loses_no_notification(ciba: Ciba, mode: str) -> None:
    """No delivery can succeed before the kill (the endpoints refuse), and the kill comes as soon
    as the approval is acknowledged: in practice before the worker's sweep (every 0.2 s) noticed
    it, else between its notice and the delivery. Either way the restarted service delivers it:
    the approved task is in the store, and the pending handle's sweep resolves it then."""
    deployed, receiver = ciba.deployed, ciba.receiver
    as_server = deployed.authorization_server
    client = ciba.register("trader-9", mode)
    receiver.default_status, as_server.push_status = 503, 503
    before = deployed.inbox()
    token = f"cnt-crash-{mode}"
    answer = accepted(client.backchannel(5204, client_notification_token=token), interval=mode == "ping")
    auth_req_id = answer["auth_req_id"]
    task_id = new_task(deployed, before)
    deployed.review(task_id, "approve")
    deployed.kill()
    receiver.default_status, as_server.push_status = 204, None
    deployed.restart()
    event = f"ciba.{mode}"
    assert poll(lambda: bool(delivered(ciba, task_id, event)), RETRIED), f"the {mode} was not delivered after the restart"
    handle = assert_noticed_once(ciba, task_id, event)
    if mode == "ping":
        pings = ciba.notified("/ping", auth_req_id)
        assert pings
        for ping in pings:
            assert_ping(ping, auth_req_id, token)
        issued = client.poll_ciba(auth_req_id)
        assert issued.status_code == 200, issued.text
        assert issued.json()["authorization_details"][0]["amount"] == 5204
    else:
        [push] = ciba.notified("/push", auth_req_id)
        assert_pushed_tokens(push, auth_req_id, token, 5204)
        assert_minted_from_one_grant(ciba, auth_req_id, handle)
