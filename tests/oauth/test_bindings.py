"""The issue's "Done when", for each of the three bindings alike (spec/arop.md §11, §12, §13;
oauth-transports.md §2-§4): a real OAuth client (httpx, joserfc DPoP proofs) against the test
AS on the sidecar API, with alice deciding in the reviewer API.

- pending → polls → approval → a grant bounded by `approved_until` (OP-16, OP-33, OP-34);
- denial → `access_denied` (OP-68);
- expiry → `expired_token`, and the access request is cancelled (OP-26, OP-67, OP-68);
- redemption with another DPoP key → `invalid_grant` (OP-24, OP-64);
- 50 concurrent redemptions → exactly one grant (OP-25);
- polling faster than `interval` → `slow_down` (OP-28, TX-13, TX-24, TX-40).

One deployment serves all three: DTR and the transaction challenge (the RS as PEP) for trader-7
buying on alice-main, CIBA (poll mode) for trader-7 acting for alice, who approves herself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from joserfc.jwk import ECKey

from profiles.arop import ciba, dtr
from profiles.arop.handles import handle_digest
from services.store import ContinuationHandle, create_store
from tests.oauth.conftest import APPROVABLE, RS, Deployment, OAuthClient, ResourceServer, all_bindings, claims_of, new_task, wait_interval
from tests.support import poll


class Binding:
    """How a client starts a deferred request and polls its handle in one binding."""

    name: str
    path: str  # where polls go

    def start(self, client: OAuthClient, amount: int) -> httpx.Response:
        raise NotImplementedError

    def handle(self, pending: httpx.Response) -> str:
        raise NotImplementedError

    def poll_form(self, client: OAuthClient, handle: str) -> dict[str, str]:
        raise NotImplementedError

    def poll(self, client: OAuthClient, handle: str, key: ECKey | None = None) -> httpx.Response:
        return client.http.post(self.path, data=self.poll_form(client, handle), headers={"DPoP": client.proof(self.path, key)})


class DeferredTokenResponse(Binding):
    name, path = "dtr", "/token"

    def start(self, client: OAuthClient, amount: int) -> httpx.Response:
        return client.trade(amount, completion_mode="deferred")

    def handle(self, pending: httpx.Response) -> str:
        assert pending.status_code == 400, pending.text  # TX-9: the deferral is an error body
        body = pending.json()
        assert set(body) == {"error", "deferral_code", "expires_in", "interval"} and body["error"] == "authorization_pending"
        return str(body["deferral_code"])

    def poll_form(self, client: OAuthClient, handle: str) -> dict[str, str]:
        return client.form(grant_type=dtr.GRANT_TYPE, deferral_code=handle)


class Ciba(Binding):
    name, path = "ciba", "/token"

    def start(self, client: OAuthClient, amount: int) -> httpx.Response:
        return client.backchannel(amount, resource=RS)

    def handle(self, pending: httpx.Response) -> str:
        assert pending.status_code == 200, pending.text  # TX-21
        assert set(pending.json()) == {"auth_req_id", "expires_in", "interval"}
        return str(pending.json()["auth_req_id"])

    def poll_form(self, client: OAuthClient, handle: str) -> dict[str, str]:
        return client.form(grant_type=ciba.GRANT_TYPE, auth_req_id=handle)


class TransactionChallenge(Binding):
    name, path = "txn", "/txn"

    def __init__(self, rs: ResourceServer, audience: str) -> None:
        self.rs, self.audience = rs, audience

    def start(self, client: OAuthClient, amount: int) -> httpx.Response:
        details = [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": amount}]
        challenge = self.rs.challenge(self.audience, txn=str(uuid.uuid4()), authorization_details=details)
        return client.present(challenge)

    def handle(self, pending: httpx.Response) -> str:
        assert pending.status_code == 200, pending.text  # TX-38 (b)
        assert set(pending.json()) == {"transaction_authorization_id", "expires_in", "interval"}
        return str(pending.json()["transaction_authorization_id"])

    def poll_form(self, client: OAuthClient, handle: str) -> dict[str, str]:
        return client.form(transaction_authorization_id=handle)


BINDINGS = ["dtr", "ciba", "txn"]


class Setup:
    def __init__(self, deployed: Deployment, rs: ResourceServer) -> None:
        self.deployed = deployed
        deployed.authorization_server.ciba_clients["trader-7"] = {"mode": "poll"}
        issuer = deployed.authorization_server.issuer
        self.bindings: dict[str, Binding] = {"dtr": DeferredTokenResponse(), "ciba": Ciba(), "txn": TransactionChallenge(rs, issuer)}

    def pending(self, name: str, amount: int) -> tuple[Binding, OAuthClient, str, str]:
        """A new client's deferred request: (binding, client, handle, the task behind it)."""
        binding, client = self.bindings[name], self.deployed.client()
        before = self.deployed.inbox()
        handle = binding.handle(binding.start(client, amount))
        return binding, client, handle, new_task(self.deployed, before)


@pytest.fixture(scope="module")
def setup(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with all_bindings(backend, tmp_path_factory.mktemp(f"bindings-{backend}"), rs_keys) as deployed:
        yield Setup(deployed, rs_keys[0])


@pytest.fixture(scope="module")
def short_setup(backend: str, rs_keys: tuple[ResourceServer, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Handles that live 3 s."""
    with all_bindings(backend, tmp_path_factory.mktemp(f"bindings-short-{backend}"), rs_keys, variant="short") as deployed:
        yield Setup(deployed, rs_keys[0])


def refused(response: httpx.Response) -> str:
    """An RFC 6749 §5.2 error with nothing else in it (OP-1, OP-70)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) <= {"error", "interval"}, body  # TX-15: a pending DTR poll repeats `interval` only
    return str(body["error"])


def stored(deployed: Deployment, handle: str) -> ContinuationHandle:
    """The handle's record, read from the service's store as someone with a copy of it could."""

    async def read() -> ContinuationHandle:
        store = create_store(deployed.store_url, pool_min=1, pool_max=1)
        await store.open(migrate=False)
        try:
            record = await store.get_handle(handle_digest(handle))
        finally:
            await store.close()
        assert record is not None
        return record

    return asyncio.run(read())


@pytest.mark.parametrize("name", BINDINGS)
def test_op_16_op_33_op_34_tx_66_pending_polls_approval_then_a_grant_bounded_by_approved_until(setup: Setup, name: str) -> None:
    binding, client, handle, task_id = setup.pending(name, APPROVABLE + 10)
    wait_interval()
    assert refused(binding.poll(client, handle)) == "authorization_pending"

    approved_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    setup.deployed.review(task_id, "approve", approved_until=approved_until.isoformat().replace("+00:00", "Z"))
    wait_interval()
    issued = binding.poll(client, handle)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    token = claims_of(body["access_token"])
    assert token["exp"] <= approved_until.timestamp() and 0 < body["expires_in"] <= 300  # OP-34
    assert token["cnf"] == {"jkt": client.jkt} and body["token_type"] == "DPoP"  # OP-63
    assert token["aud"] == [RS]  # OP-5, OP-59
    granted = [{"type": "trade", "identifier": "alice-main", "actions": ["buy"], "amount": APPROVABLE + 10}]
    assert body["authorization_details"] == token["authorization_details"] == granted  # OP-33: as requested
    assert not {"evaluation_id", "binding_token", "approval", "task", "access_request"} & set(body)  # OP-2
    if name == "txn":
        assert token["txn"] and "refresh_token" not in body  # OP-59


@pytest.mark.parametrize("name", BINDINGS)
def test_op_68_op_27_denial_is_access_denied_on_every_poll_and_the_sealed_handle_is_gone(setup: Setup, name: str) -> None:
    binding, client, handle, task_id = setup.pending(name, APPROVABLE + 20)
    assert stored(setup.deployed, handle).sealed_handle  # kept only to answer a retried request (OP-20)
    setup.deployed.review(task_id, "deny", reason="not this week")
    for _ in range(2):  # TX-14: the error stays
        wait_interval()
        assert refused(binding.poll(client, handle)) == "access_denied"
    record = stored(setup.deployed, handle)
    assert record.state == "denied" and record.sealed_handle is None and handle not in msgspec.json.encode(record).decode()


@pytest.mark.parametrize("name", BINDINGS)
def test_op_26_op_67_op_68_expiry_is_expired_token_and_cancels_the_task(short_setup: Setup, name: str) -> None:
    binding, client, handle, task_id = short_setup.pending(name, APPROVABLE + 30)
    assert poll(lambda: short_setup.deployed.task(task_id)["status"] != "pending", 10)  # the worker expired it
    assert short_setup.deployed.task(task_id)["status"] == "cancelled"
    for _ in range(2):
        wait_interval()
        assert refused(binding.poll(client, handle)) == "expired_token"


@pytest.mark.parametrize("name", BINDINGS)
def test_op_24_op_64_redemption_with_another_dpop_key_is_invalid_grant(setup: Setup, name: str) -> None:
    binding, client, handle, task_id = setup.pending(name, APPROVABLE + 40)
    setup.deployed.review(task_id, "approve")
    wait_interval()
    assert refused(binding.poll(client, handle, key=ECKey.generate_key("P-256"))) == "invalid_grant"
    assert refused(binding.poll(setup.deployed.client("trader-9"), handle)) == "invalid_grant"  # another client
    assert binding.poll(client, handle).status_code == 200  # neither attempt spent the handle


@pytest.mark.parametrize("name", BINDINGS)
def test_op_25_fifty_concurrent_redemptions_issue_exactly_one_grant(setup: Setup, name: str) -> None:
    binding, client, handle, task_id = setup.pending(name, APPROVABLE + 50)
    setup.deployed.review(task_id, "approve")
    wait_interval()
    form = binding.poll_form(client, handle)

    async def redeem_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=client.issuer, timeout=60) as http:
            proofs = [client.proof(binding.path) for _ in range(50)]
            return await asyncio.gather(*(http.post(binding.path, data=form, headers={"DPoP": proof}) for proof in proofs))

    answers = asyncio.run(redeem_all())
    assert sorted(r.status_code for r in answers) == [200] + [400] * 49, [r.text for r in answers if r.status_code != 400]
    assert {refused(r) for r in answers if r.status_code == 400} == {"invalid_grant"}


@pytest.mark.parametrize("name", BINDINGS)
def test_op_28_tx_13_tx_24_tx_40_polling_faster_than_interval_is_slow_down(setup: Setup, name: str) -> None:
    binding, client, handle, _ = setup.pending(name, APPROVABLE + 60)
    assert refused(binding.poll(client, handle)) == "slow_down"  # at once: faster than `interval`
    wait_interval()  # the original interval has passed, the grown one (+5 s, OP-28) has not
    assert refused(binding.poll(client, handle)) == "slow_down"


AUTO_APPROVED = 1500  # the owner_approval workflow approves buys up to 2,000 on submission


@pytest.mark.parametrize("name", BINDINGS)
def test_tx_7_tx_38_d_9_an_auto_approved_request_completes_without_waiting(setup: Setup, name: str) -> None:
    """DTR and the transaction endpoint answer with the token at once; CIBA's backchannel answer
    is always an `auth_req_id` (TX-21), redeemed at the first poll."""
    binding, client = setup.bindings[name], setup.deployed.client()
    answer = binding.start(client, AUTO_APPROVED)
    if name == "ciba":
        handle = binding.handle(answer)
        wait_interval()
        answer = binding.poll(client, handle)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["authorization_details"][0]["amount"] == AUTO_APPROVED and claims_of(body["access_token"])["cnf"] == {"jkt": client.jkt}
    assert claims_of(body["access_token"]).get("txn") if name == "txn" else "txn" not in claims_of(body["access_token"])


def test_op_12_tx_37_tx_67_the_as_advertises_each_transport_it_serves(setup: Setup) -> None:
    """The test AS publishes its RFC 8414 document from GET /oauth/v1/metadata and its endpoints."""
    issuer = setup.deployed.authorization_server.issuer
    document = httpx.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    assert document["deferred_token_response_supported"] is True
    assert {dtr.GRANT_TYPE, ciba.GRANT_TYPE} <= set(document["grant_types_supported"])
    assert document["revocation_endpoint_token_type_values_supported"] == [dtr.DEFERRAL_CODE_HINT]
    assert document["backchannel_token_delivery_modes_supported"] == ["poll", "ping"]  # no push endpoint configured
    assert document["transaction_authorization_endpoint"] == f"{issuer}/txn"  # TX-37
    assert document["backchannel_authentication_endpoint"] == f"{issuer}/bc-authorize"
    assert document["authorization_details_types_supported"] == ["portfolio_read", "trade"]  # TX-67: the bundle's vocabulary
    unauthenticated = httpx.get(f"{setup.deployed.base_url}/oauth/v1/metadata", timeout=10)
    assert unauthenticated.status_code == 401
