"""The Access Request Service's background work, run in every worker process and replica:
pending tasks expire on time (AR-87), step timeouts expire or escalate, recorded evaluations
and remembered token ids are purged after their windows, callbacks are delivered, and the
sidecar's pending continuation handles expire, cancelling their tasks first (AROP OP-26).

Running it everywhere at once is safe: task changes are version-checked, callback deliveries
leased, purges idempotent. A failed round is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from services import background
from services.access_requests.delivery import CallbackDeliverer
from services.access_requests.service import SYSTEM, AccessRequestService
from services.auth import Caller
from services.oauth.service import SidecarService
from services.store import StoreUnavailable

log = logging.getLogger("arop.access_requests")
# How long a recorded evaluation outlives its binding window (expiry + skew). A submission after
# the window gets 410 `expired_denial` (evaluate again) while the record exists, and 400
# `invalid_denial_binding` (unknown id) once it is gone: the PEP should learn the first.
EXPIRED_EVALUATION_KEPT = timedelta(minutes=15)


class AccessRequestWorker:
    def __init__(self, service: AccessRequestService, deliverer: CallbackDeliverer, oauth: SidecarService | None = None) -> None:
        self.service = service
        self.deliverer = deliverer
        self.oauth = oauth
        self.interval = service.config.access_requests.worker_interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="access-request-worker")

    async def stop(self) -> None:
        await background.stop(self._task)

    async def run_once(self, now: datetime) -> None:
        store = self.service.store
        # Whole seconds, like every instant the service hands out (services/access_requests/api.py).
        await self.service.expire_due(now.replace(microsecond=0))
        if self.oauth is not None:
            await self.oauth.expire_due(Caller(SYSTEM, frozenset()), now)
            # CIBA ping/push: resolve the handles whose task ended, queueing their notifications.
            await self.oauth.notify_due(Caller(SYSTEM, frozenset()), now)
        # Submissions are refused after expiry + skew anyway; a record is kept a while longer so
        # that a late one is told so (AR-30: `expired_denial`), not that its id is unknown.
        await store.purge_evaluations(now - self.service.skew - EXPIRED_EVALUATION_KEPT)
        await store.purge_token_ids(now - self.service.skew)
        await store.purge_challenge_sessions(now - self.service.skew)
        await store.purge_reviewer_sessions(now)
        await self.deliverer.deliver_due(datetime.now(UTC))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once(datetime.now(UTC))
            except StoreUnavailable:
                log.warning("store unavailable; access-request housekeeping resumes when it returns")
            except Exception:  # keep going: the next round may succeed
                log.exception("access-request housekeeping failed")
