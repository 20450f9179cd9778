"""The CIBA binding end to end (spec/arop.md §11.2, OP-49..OP-55; oauth-transports.md §3,
TX-20..TX-28): a real OAuth client with DPoP proofs → the test AS's backchannel endpoint → the
sidecar → the PDP and ARS → the reviewer API, in all three delivery modes. Ping and push go to
an HTTPS client notification endpoint (a receiver on 127.0.0.1 with a test CA), push through the
AS's push endpoint, which the sidecar notifies HMAC-signed (OP-51). Named after the requirement
each test proves.

The bundle is the trading-agent one with the owner's own standing access limited to direct use:
a buy by a client acting for alice (CIBA's principal is the hinted user, OP-49) is requestable
and alice approves it herself (the workflow allows self-approval, as CIBA's decoupled approval is).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from profiles.arop.ciba import AUTH_REQ_ID_CLAIM
from tests.https_receiver import HttpsReceiver, Received, TestCA, https_receiver
from tests.oauth.conftest import INTERVAL, VARIANTS, Deployment, OAuthClient, ciba_bundle, claims_of, deployment, new_task
from tests.server import free_port
from tests.support import poll

PUSH_SECRET = "push-secret-of-the-as"


class Ciba:
    def __init__(self, deployed: Deployment, receiver: HttpsReceiver) -> None:
        self.deployed = deployed
        self.receiver = receiver

    def endpoint(self, path: str) -> str:
        return f"https://127.0.0.1:{self.receiver.port}{path}"

    def register(self, client_id: str, mode: str) -> OAuthClient:
        registration = {"mode": mode} if mode == "poll" else {"mode": mode, "endpoint": self.endpoint(f"/{mode}")}
        self.deployed.authorization_server.ciba_clients[client_id] = registration
        return self.deployed.client(client_id)

    def notified(self, path: str, auth_req_id: str) -> list[Received]:
        return [r for r in list(self.receiver.received) if r.path == path and json.loads(r.body).get("auth_req_id") == auth_req_id]


@contextmanager
def ciba_deployment(backend: str, workdir: Path, access_requests: str = "") -> Iterator[Ciba]:
    """The service on the CIBA bundle, its AS with the push endpoint, and the clients' HTTPS
    notification endpoint (answering 204); `access_requests`: more TOML for that section."""
    ca = TestCA(workdir)
    as_port = free_port()
    with https_receiver(*ca.issue_server(["127.0.0.1"])) as receiver, deployment(
        backend, workdir, VARIANTS["default"] + f'push_endpoint = "http://127.0.0.1:{as_port}/ciba/push"\n',
        caller=f'callback_secret = "{PUSH_SECRET}"\n',
        access_requests=f'callback_allow_networks = ["127.0.0.0/8"]\ncallback_ca_file = "{ca.ca_file}"\n{access_requests}',
        edit_bundle=ciba_bundle,
        as_options={"port": as_port, "push_secret": PUSH_SECRET, "ca_file": str(ca.ca_file)},
    ) as deployed:
        receiver.default_status = 204
        yield Ciba(deployed, receiver)


@pytest.fixture(scope="module")
def ciba_deployed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ciba]:
    with ciba_deployment(backend, tmp_path_factory.mktemp(f"ciba-{backend}")) as deployed:
        yield deployed


def accepted(response: Any, *, interval: bool = True) -> dict[str, Any]:
    """TX-21: 200 with the handle, its lifetime and (poll, ping) the interval."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == ({"auth_req_id", "expires_in", "interval"} if interval else {"auth_req_id", "expires_in"}), body
    assert len(body["auth_req_id"]) >= 43 and body["expires_in"] > 0  # TX-21: high entropy
    return body  # type: ignore[no-any-return]


def test_op_51_tx_23_tx_25_poll_pending_then_approval_then_token(ciba_deployed: Ciba) -> None:
    deployed = ciba_deployed.deployed
    client = ciba_deployed.register("trader-7", "poll")
    before = deployed.inbox()
    body = accepted(client.backchannel(5100, binding_message="Buy 5100 for alice-main"))
    assert body["interval"] == INTERVAL
    task_id = new_task(deployed, before)
    assert deployed.task(task_id)["subject"]["id"] == "alice"  # OP-49: the hinted user
    time.sleep(INTERVAL + 0.2)
    pending = client.poll_ciba(body["auth_req_id"])
    assert (pending.status_code, pending.json()) == (400, {"error": "authorization_pending"})
    deployed.review(task_id, "approve")
    issued = client.poll_ciba(body["auth_req_id"])
    assert issued.status_code == 200, issued.text
    token = claims_of(issued.json()["access_token"])
    assert token["sub"] == "alice" and token["cnf"] == {"jkt": client.jkt}
    assert issued.json()["authorization_details"][0]["amount"] == 5100  # OP-55
    again = client.poll_ciba(body["auth_req_id"])
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


def test_d_4_a_non_requestable_denial_is_invalid_authorization_details(ciba_deployed: Ciba) -> None:
    client = ciba_deployed.register("trader-7", "poll")
    refused = client.backchannel(5102, portfolio="alice-frozen")
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_authorization_details"})


def test_tx_22_requested_expiry_bounds_expires_in(ciba_deployed: Ciba) -> None:
    client = ciba_deployed.register("trader-7", "poll")
    body = accepted(client.backchannel(5103, requested_expiry="30"))
    assert 0 < body["expires_in"] <= 30


def test_op_52_ping_without_client_notification_token_is_invalid_request(ciba_deployed: Ciba) -> None:
    client = ciba_deployed.register("trader-7", "ping")
    refused = client.backchannel(5104)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


def test_tx_26_ping_notifies_the_client_with_its_bearer_then_it_redeems(ciba_deployed: Ciba) -> None:
    deployed = ciba_deployed.deployed
    client = ciba_deployed.register("trader-7", "ping")
    before = deployed.inbox()
    body = accepted(client.backchannel(5105, client_notification_token="cnt-ping-5105"))
    task_id = new_task(deployed, before)
    time.sleep(0.5)
    assert ciba_deployed.notified("/ping", body["auth_req_id"]) == []  # nothing before the approval
    deployed.review(task_id, "approve")
    assert poll(lambda: bool(ciba_deployed.notified("/ping", body["auth_req_id"])), 10)
    [ping] = ciba_deployed.notified("/ping", body["auth_req_id"])
    assert ping.headers["authorization"] == "Bearer cnt-ping-5105"
    assert json.loads(ping.body) == {"auth_req_id": body["auth_req_id"]}
    issued = client.poll_ciba(body["auth_req_id"])
    assert issued.status_code == 200, issued.text
    time.sleep(0.5)
    assert len(ciba_deployed.notified("/ping", body["auth_req_id"])) == 1  # once


def test_tx_26_ping_on_denial(ciba_deployed: Ciba) -> None:
    deployed = ciba_deployed.deployed
    client = ciba_deployed.register("trader-7", "ping")
    before = deployed.inbox()
    body = accepted(client.backchannel(5106, client_notification_token="cnt-ping-5106"))
    deployed.review(new_task(deployed, before), "deny", reason="no")
    assert poll(lambda: bool(ciba_deployed.notified("/ping", body["auth_req_id"])), 10)
    assert client.poll_ciba(body["auth_req_id"]).json() == {"error": "access_denied"}


def test_op_51_tx_27_push_the_as_mints_and_delivers_the_tokens(ciba_deployed: Ciba) -> None:
    deployed = ciba_deployed.deployed
    client = ciba_deployed.register("trader-7", "push")
    before = deployed.inbox()
    body = accepted(client.backchannel(5107, client_notification_token="cnt-push-5107"), interval=False)
    refused = client.poll_ciba(body["auth_req_id"])  # TX-24: push clients have nothing to redeem
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
    deployed.review(new_task(deployed, before), "approve")
    assert poll(lambda: bool(ciba_deployed.notified("/push", body["auth_req_id"])), 10)
    [delivered] = ciba_deployed.notified("/push", body["auth_req_id"])
    assert delivered.headers["authorization"] == "Bearer cnt-push-5107"
    tokens = json.loads(delivered.body)
    assert {"auth_req_id", "access_token", "token_type", "expires_in", "id_token", "authorization_details"} <= set(tokens)
    assert tokens["authorization_details"][0]["amount"] == 5107  # OP-55
    id_token = claims_of(tokens["id_token"])
    assert id_token[AUTH_REQ_ID_CLAIM] == body["auth_req_id"] and "at_hash" in id_token
    access = claims_of(tokens["access_token"])
    assert access["sub"] == "alice" and access["cnf"] == {"jkt": client.jkt}


def test_tx_28_push_denial_is_delivered_as_an_error(ciba_deployed: Ciba) -> None:
    deployed = ciba_deployed.deployed
    client = ciba_deployed.register("trader-7", "push")
    before = deployed.inbox()
    body = accepted(client.backchannel(5108, client_notification_token="cnt-push-5108"), interval=False)
    deployed.review(new_task(deployed, before), "deny", reason="no")
    assert poll(lambda: bool(ciba_deployed.notified("/push", body["auth_req_id"])), 10)
    [delivered] = ciba_deployed.notified("/push", body["auth_req_id"])
    assert json.loads(delivered.body) == {"auth_req_id": body["auth_req_id"], "error": "access_denied"}
