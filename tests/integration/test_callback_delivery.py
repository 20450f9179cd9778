"""Completion callbacks delivered over real HTTPS (ARAP §13, D-ARAP-12): signed with the caller's
secret (AR-78), checked again at delivery (AR-77), retried with backoff, given up in the end,
leased so that replicas deliver once. Every test runs on SQLite and on PostgreSQL; the receiver
is an HTTPS server on 127.0.0.1 with a certificate from a CA made for the test, reached as
`pep.test` (resolved by the test, so that no machine's idea of `localhost` matters)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from profiles.arap.callbacks import verify_callback_signature
from services.access_requests.delivery import CallbackDeliverer, retry_delay
from services.config import AccessRequestConfig, CallerConfig, Config
from services.store import Store
from services.store.records import AuditEvent, CallbackDelivery
from tests.https_receiver import HttpsReceiver, TestCA, https_receiver
from tests.store.conftest import OpenStore
from tests.store.test_store_access_requests import next_version, task, with_task

SECRET = "callback-secret-of-pep"
HOST = "pep.test"
# A name only: a certificate valid for the address would hide a client verifying the address it
# connects to instead of the endpoint's host.
SERVER_NAMES = [HOST]


@pytest.fixture(autouse=True)
async def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`pep.test` resolves to 127.0.0.1, where receivers listen, through the event loop as the
    deliverer resolves; the lookups of it are recorded. Other names resolve as usual."""
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo
    made: list[str] = []

    async def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host != HOST:
            return await real_getaddrinfo(host, port, **kwargs)
        made.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    return made


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def receiver(ca: TestCA) -> Iterator[HttpsReceiver]:
    with https_receiver(*ca.issue_server(SERVER_NAMES)) as running:
        yield running


def settings(receiver: HttpsReceiver, ca: TestCA, *, caller: dict[str, Any] | None = None, **access_requests: Any) -> Config:
    """The caller `pep` with the receiver registered, 127/8 allowlisted, the test CA trusted."""
    pep = {"name": "pep", "key_sha256": "0" * 64, "scopes": ["request"], "callback_secret": SECRET,
           "callback_urls": [f"https://{HOST}:{receiver.port}/"]}
    ars = {"callback_allow_networks": ["127.0.0.0/8"], "callback_ca_file": str(ca.ca_file), "callback_timeout": 5.0}
    return Config(
        callers=[CallerConfig(**{**pep, **(caller or {})})],
        access_requests=AccessRequestConfig(**{**ars, **access_requests}),
    )


async def queue_callback(store: Store, endpoint: str, now: datetime, task_id: str = "t1") -> CallbackDelivery:
    """A task approved now and its callback, queued as the service queues it (with the update)."""
    pending = await with_task(store, task(task_id, requester="pep"))
    delivery = CallbackDelivery(
        id=f"cb-{task_id}", task_id=task_id, caller="pep", event="approved", endpoint=endpoint,
        body={"state": "c1x9", "task": {"id": task_id, "status": "approved", "status_endpoint": f"https://ars.example/tasks/{task_id}"}},
        next_attempt_at=now,
    )
    approved = next_version(pending, status="approved")
    assert await store.update_task(approved, expected_version=pending.version, callbacks=[delivery])
    return delivery


async def callback_audit(store: Store) -> list[AuditEvent]:
    return [event for event in await store.audit_events() if event.kind.startswith("callback.")]


def endpoint(receiver: HttpsReceiver) -> str:
    return f"https://{HOST}:{receiver.port}/cb"


async def test_ar_78_callback_is_hmac_signed(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    delivery = await queue_callback(store, endpoint(receiver), now)

    assert await CallbackDeliverer(store, settings(receiver, ca)).deliver_due(now) == 1

    [received] = receiver.received
    assert received.path == "/cb"
    assert received.headers["host"] == f"{HOST}:{receiver.port}"
    assert received.headers["content-type"] == "application/json"
    assert msgspec.json.decode(received.body) == delivery.body
    signature, window = received.headers["arop-signature"], timedelta(minutes=5)
    assert verify_callback_signature(SECRET.encode(), signature, received.body, now=datetime.now(UTC), window=window)
    assert not verify_callback_signature(b"another secret", signature, received.body, now=datetime.now(UTC), window=window)
    [audit] = await callback_audit(store)
    assert (audit.kind, audit.actor, audit.task_id) == ("callback.delivered", "arop", "t1")
    assert audit.data == {"event": "approved", "endpoint": endpoint(receiver), "attempts": 1}
    assert await CallbackDeliverer(store, settings(receiver, ca)).deliver_due(now + timedelta(days=1)) == 0


async def test_a_failed_delivery_is_retried_after_a_backoff(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)
    receiver.statuses = [500]
    deliverer = CallbackDeliverer(store, settings(receiver, ca))

    assert await deliverer.deliver_due(now) == 1
    assert await callback_audit(store) == []
    assert await deliverer.deliver_due(now + timedelta(seconds=2)) == 0  # the first retry waits 2.5 to 5 s
    assert await deliverer.deliver_due(now + timedelta(seconds=5)) == 1

    assert len(receiver.received) == 2
    [audit] = await callback_audit(store)
    assert (audit.kind, audit.data["attempts"]) == ("callback.delivered", 2)


def test_retry_delay_doubles_up_to_an_hour_with_jitter() -> None:
    for attempts, full in [(1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (1000, 3600)]:
        delays = {retry_delay(attempts).total_seconds() for _ in range(50)}
        assert all(full / 2 <= delay <= full for delay in delays), (attempts, delays)
        assert len(delays) > 1  # jittered


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param({"callback_urls": ["https://other.example/"]}, id="endpoint-no-longer-registered"),
        pytest.param({"callback_secret": ""}, id="no-secret"),
        pytest.param({"name": "another-pep"}, id="caller-gone"),
    ],
)
async def test_ar_77_ar_78_misconfigured_callback_fails_at_once(
    store: Store, receiver: HttpsReceiver, ca: TestCA, caller: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)
    deliverer = CallbackDeliverer(store, settings(receiver, ca, caller=caller, callback_max_attempts=8))

    assert await deliverer.deliver_due(now) == 1
    assert await deliverer.deliver_due(now + timedelta(days=1)) == 0

    assert receiver.received == []
    [audit] = await callback_audit(store)
    assert (audit.kind, audit.data["attempts"]) == ("callback.failed", 1)


async def test_ar_77_internal_address_is_refused_at_delivery(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)  # 127.0.0.1, not allowlisted now
    deliverer = CallbackDeliverer(store, settings(receiver, ca, callback_allow_networks=[], callback_max_attempts=1))

    assert await deliverer.deliver_due(now) == 1

    assert receiver.received == []
    [audit] = await callback_audit(store)
    assert audit.kind == "callback.failed"
    assert "internal address" in audit.data["error"]


async def test_ar_77_delivery_connects_to_the_address_it_checked(
    store: Store, receiver: HttpsReceiver, ca: TestCA, lookups: list[str]
) -> None:
    """The name is resolved once, by the check: the connection goes to the checked address,
    with the name kept for Host and TLS, so a second DNS answer cannot redirect it."""
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)

    assert await CallbackDeliverer(store, settings(receiver, ca)).deliver_due(now) == 1

    assert len(receiver.received) == 1
    assert lookups == [HOST]
    assert [audit.kind for audit in await callback_audit(store)] == ["callback.delivered"]


async def test_gives_up_after_max_attempts(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)
    receiver.default_status = 503
    deliverer = CallbackDeliverer(store, settings(receiver, ca, callback_max_attempts=3))

    attempted = [await deliverer.deliver_due(now + timedelta(hours=hours)) for hours in range(4)]

    assert attempted == [1, 1, 1, 0]
    assert len(receiver.received) == 3
    [audit] = await callback_audit(store)
    assert audit.kind == "callback.failed"
    assert audit.data == {"event": "approved", "endpoint": endpoint(receiver), "attempts": 3, "error": "HTTP 503"}


async def test_two_deliverers_on_one_database_deliver_once(
    open_store: OpenStore, receiver: HttpsReceiver, ca: TestCA
) -> None:
    first, second = await open_store(), await open_store()
    now = datetime.now(UTC)
    for n in range(6):
        await queue_callback(first, endpoint(receiver), now, task_id=f"t{n}")
    config = settings(receiver, ca)

    attempted = await asyncio.gather(
        CallbackDeliverer(first, config).deliver_due(now), CallbackDeliverer(second, config).deliver_due(now)
    )

    assert sum(attempted) == 6
    assert sorted(msgspec.json.decode(r.body)["task"]["id"] for r in receiver.received) == [f"t{n}" for n in range(6)]
    assert [audit.kind for audit in await callback_audit(first)] == ["callback.delivered"] * 6


@pytest.mark.parametrize("certificate", ["untrusted-ca", "wrong-name"])
async def test_tls_verification_is_on(store: Store, ca: TestCA, tmp_path: Path, certificate: str) -> None:
    issuer = TestCA(tmp_path, "untrusted CA") if certificate == "untrusted-ca" else ca
    names = SERVER_NAMES if certificate == "untrusted-ca" else ["elsewhere.test"]
    with https_receiver(*issuer.issue_server(names)) as impostor:
        now = datetime.now(UTC)
        await queue_callback(store, endpoint(impostor), now)
        assert await CallbackDeliverer(store, settings(impostor, ca, callback_max_attempts=1)).deliver_due(now) == 1

    assert impostor.received == []
    [audit] = await callback_audit(store)
    assert audit.kind == "callback.failed"
    assert "CERTIFICATE_VERIFY_FAILED" in audit.data["error"]


async def test_redirects_are_not_followed(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)
    receiver.statuses = [302]

    assert await CallbackDeliverer(store, settings(receiver, ca, callback_max_attempts=1)).deliver_due(now) == 1

    assert [received.path for received in receiver.received] == ["/cb"]
    [audit] = await callback_audit(store)
    assert (audit.kind, audit.data["error"]) == ("callback.failed", "HTTP 302")


async def test_a_receiver_that_does_not_answer_in_time_is_retried(store: Store, receiver: HttpsReceiver, ca: TestCA) -> None:
    now = datetime.now(UTC)
    await queue_callback(store, endpoint(receiver), now)
    receiver.delay = 1.0
    deliverer = CallbackDeliverer(store, settings(receiver, ca, callback_timeout=0.2, callback_max_attempts=2))

    assert await deliverer.deliver_due(now) == 1
    assert await callback_audit(store) == []
    receiver.delay = 0.0
    assert await deliverer.deliver_due(now + timedelta(minutes=1)) == 1

    [audit] = await callback_audit(store)
    assert (audit.kind, audit.data["attempts"]) == ("callback.delivered", 2)
