"""Completion callbacks delivered to PEPs (ARAP §13: AR-77, AR-78; D-ARAP-12).

Tasks queue their callbacks in the store together with the change that caused them. This worker
claims the due ones under a lease (so replicas and worker processes never deliver one twice at a
time), posts each with an HMAC signature, and records the outcome: delivered, retried later with
backoff, or given up. A lost callback never loses a result: the task stays retrievable at its
status endpoint (AR-80), so nothing here touches the task.

Every attempt checks the destination again: the endpoint must still be registered for the caller,
and the host is resolved anew and every address checked (DNS rebinding). The connection then goes
to the checked address itself, with the name kept for the Host header and for TLS, so a second DNS
answer cannot send the request elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import ssl
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec

from profiles.arap.callbacks import SIGNATURE_HEADER, callback_signature, check_callback_addresses, check_callback_uri
from profiles.arap.errors import BadRequest
from services.config import Config
from services.oauth.sealing import HandleSeal
from services.store import Store
from services.store.records import SEALED_HANDLE, AuditDraft, CallbackDelivery

log = logging.getLogger("arop.callbacks")

BATCH_SIZE = 50
FIRST_RETRY = timedelta(seconds=5)
LONGEST_RETRY = timedelta(hours=1)
MAX_ERROR_LENGTH = 200
CIBA_PUSH = "ciba.push"
"""The event of a CIBA push delivery to the AS (services/oauth/ciba.py)."""


async def checked_addresses(url: str, allowed_networks: Collection[str]) -> list[str]:
    """AR-77: resolve the URL's host now and return its addresses once every one passed the SSRF
    check; BadRequest otherwise. Run at submission and again before every delivery."""
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        raise BadRequest("callback.endpoint has an invalid port") from None
    if not parts.hostname:
        raise BadRequest("callback.endpoint has no host")
    loop = asyncio.get_running_loop()
    try:
        answers = await loop.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadRequest("callback.endpoint does not resolve") from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))
    check_callback_addresses(addresses, allowed_networks)
    return addresses


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Verifying TLS against the system CAs, plus `ca_file` for peers under a private PKI
    (callback receivers, resource servers' key sets). Verification is never switched off: for a
    callback, the receiver's certificate is what makes the pinned address the endpoint's host."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff after the `attempts`-th failure (5 s, 10 s, 20 s … at most 1 h), with
    jitter down to half the delay so that callbacks failing together (a receiver outage) do not
    come back in lockstep."""
    doublings = min(attempts - 1, 32)  # far past the cap, and within timedelta's range
    delay = min(FIRST_RETRY * (1 << doublings), LONGEST_RETRY)
    return delay * random.uniform(0.5, 1.0)


def attempted(delivery: CallbackDelivery, now: datetime, error: str | None, *, give_up: bool) -> CallbackDelivery:
    """The delivery after one more attempt: delivered, failed for good (`give_up`), or due again
    after a backoff."""
    attempts = delivery.attempts + 1
    if error is None:
        return msgspec.structs.replace(delivery, attempts=attempts, delivered_at=now, last_error=None)
    if give_up:
        return msgspec.structs.replace(delivery, attempts=attempts, failed_at=now, last_error=error)
    return msgspec.structs.replace(
        delivery, attempts=attempts, next_attempt_at=now + retry_delay(attempts), last_error=error
    )


def short_error(exc: Exception) -> str:
    """What went wrong, for `last_error`: the exception's kind and message, cut short. Neither
    carries the secret or the body."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


def _unsealed(value: Any, handle: str) -> Any:
    """`value` with every SEALED_HANDLE string replaced by the opened handle."""
    if value == SEALED_HANDLE:
        return handle
    if isinstance(value, dict):
        return {key: _unsealed(item, handle) for key, item in value.items()}
    if isinstance(value, list):
        return [_unsealed(item, handle) for item in value]
    return value


class CallbackDeliverer:
    """Delivers the due callbacks of the store (run by the access-request worker)."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.settings = config.access_requests
        self.push_endpoint = config.oauth.push_endpoint
        self._callers = {caller.name: caller for caller in config.callers}
        self._seal = HandleSeal(store)  # opens the CIBA client_notification_token at delivery

    async def deliver_due(self, now: datetime) -> int:
        """Claim the callbacks due at `now` and deliver them; return how many were attempted.

        They go out concurrently, each bounded by `callback_timeout`, so the whole batch ends well
        within the lease (twice the timeout) and no other worker can claim one meanwhile."""
        lease = timedelta(seconds=2 * self.settings.callback_timeout)
        due = await self.store.claim_callbacks(now, lease=lease, limit=BATCH_SIZE)
        outcomes = await asyncio.gather(*(self._deliver(delivery, now) for delivery in due), return_exceptions=True)
        for delivery, outcome in zip(due, outcomes):
            if isinstance(outcome, BaseException):
                # The lease runs out and the delivery is claimed again on a later run.
                log.error("callback delivery failed", exc_info=outcome, extra={"callback_id": delivery.id, "task_id": delivery.task_id})
        return len(due)

    async def _deliver(self, delivery: CallbackDelivery, now: datetime) -> None:
        try:
            secret = self._secret_for(delivery)
        except BadRequest as exc:  # a misconfiguration: retrying cannot help
            await self._finish(attempted(delivery, now, exc.detail, give_up=True))
            return
        error = await self._attempt(delivery, secret, now)
        give_up = delivery.attempts + 1 >= self.settings.callback_max_attempts
        await self._finish(attempted(delivery, now, error, give_up=give_up))

    def _secret_for(self, delivery: CallbackDelivery) -> bytes | None:
        """The caller's HMAC key (AR-78), once its configuration still allows this endpoint
        (AR-77): configuration may have changed since the callback was queued. A bearer delivery
        (CIBA ping, TX-26) needs none: the client's notification token authenticates it. A CIBA
        push goes to the AS push endpoint configured now ([oauth] push_endpoint)."""
        if delivery.auth == "bearer":
            if delivery.sealed_token is None:
                raise BadRequest("a bearer delivery without its token")
            return None
        caller = self._callers.get(delivery.caller)
        if caller is None:
            raise BadRequest(f"caller {delivery.caller!r} is no longer configured")
        if not caller.callback_secret:
            raise BadRequest(f"caller {delivery.caller!r} has no callback_secret")
        if delivery.event == CIBA_PUSH:
            if not self.push_endpoint or delivery.endpoint != self.push_endpoint:
                raise BadRequest("the CIBA push endpoint is no longer configured")
        else:
            check_callback_uri(delivery.endpoint, caller.callback_urls)
        return caller.callback_secret.encode("utf-8")

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext:
        return tls_context(self.settings.callback_ca_file)

    async def _authenticated(self, delivery: CallbackDelivery, secret: bytes | None, now: datetime) -> tuple[bytes, dict[str, str]]:
        """The body and authentication header of one attempt: the HMAC signature (AR-78), or the
        CIBA client_notification_token as a bearer (TX-26), opened from its seal only now. A
        signed push carries that token in its body, for the AS to deliver with."""
        token = None if delivery.sealed_token is None else await self._seal.open(delivery.sealed_token)
        content = delivery.body
        if delivery.sealed_handle is not None:
            content = _unsealed(content, await self._seal.open(delivery.sealed_handle))
        if secret is None:
            assert token is not None
            return msgspec.json.encode(content), {"Authorization": f"Bearer {token}"}
        if token is not None:
            content = {**content, "client_notification_token": token}
        body = msgspec.json.encode(content)
        return body, {SIGNATURE_HEADER: callback_signature(secret, int(now.timestamp()), body)}

    async def _attempt(self, delivery: CallbackDelivery, secret: bytes | None, now: datetime) -> str | None:
        """One delivery attempt: None when the receiver answered 2xx, else why not."""
        # httpx (with anyio and certifi) and the TLS context cost a worker ~7 MiB: loaded when
        # the first callback is due, not in every worker that never sends one.
        import httpx

        try:
            async with asyncio.timeout(self.settings.callback_timeout):
                addresses = await checked_addresses(delivery.endpoint, self.settings.callback_allow_networks)
                body, authentication = await self._authenticated(delivery, secret, now)
                status = await self._post(delivery.endpoint, addresses[0], body, authentication)
        except BadRequest as exc:
            return exc.detail
        except TimeoutError:
            return f"no answer within {self.settings.callback_timeout:g} s"
        except (httpx.HTTPError, OSError) as exc:
            return short_error(exc)
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def _post(self, endpoint: str, address: str, body: bytes, authentication: dict[str, str]) -> int:
        """POST `body` to `endpoint` over a connection to `address` and return the status.

        A client per delivery: pooled connections are keyed by address, and a connection verified
        for one host name must not carry a request for another. No proxy from the environment
        (it would re-resolve the name), no redirects, and the response body is never read."""
        import httpx

        url = httpx.URL(endpoint)
        headers = {"Host": url.netloc.decode("ascii"), "Content-Type": "application/json", **authentication}
        async with httpx.AsyncClient(
            verify=self._tls, trust_env=False, follow_redirects=False, timeout=self.settings.callback_timeout
        ) as client:
            request = client.build_request(
                "POST", url.copy_with(host=address), content=body, headers=headers,
                extensions={"sni_hostname": url.raw_host.decode("ascii")},
            )
            response = await client.send(request, stream=True)
            await response.aclose()
            return response.status_code

    async def _finish(self, delivery: CallbackDelivery) -> None:
        """Store the outcome, with the audit event of a final one in the same transaction
        (AR-89): a crash can lose neither without the other."""
        context = {"callback_id": delivery.id, "task_id": delivery.task_id, "attempts": delivery.attempts}
        audit: list[AuditDraft] = []
        if delivery.delivered_at is not None:
            log.info("callback delivered", extra=context)
            audit.append(self._audit(delivery, "callback.delivered", delivery.delivered_at))
        elif delivery.failed_at is not None:
            log.warning("callback given up", extra={**context, "error": delivery.last_error})
            audit.append(self._audit(delivery, "callback.failed", delivery.failed_at, error=delivery.last_error))
        else:
            log.info("callback to be retried", extra={**context, "error": delivery.last_error, "next_attempt_at": delivery.next_attempt_at})
        await self.store.finish_callback(delivery, audit)

    @staticmethod
    def _audit(delivery: CallbackDelivery, kind: str, at: datetime, **extra: object) -> AuditDraft:
        data = {"event": delivery.event, "endpoint": delivery.endpoint, "attempts": delivery.attempts, **extra}
        return AuditDraft(at=at, kind=kind, actor="arop", task_id=delivery.task_id, data=data)
