"""Live inbox updates: open inboxes learn that tasks changed, and fetch what awaits them again.

Every change to a task is audited in the same transaction, so the audit chain's head moves
with every change, on whichever replica it happened: one cheap read of the head per worker and
`live_interval` serves every inbox open on that worker, with no extra infrastructure. What a
reviewer may see is computed again, by the service, on each fetch; an event carries nothing.
"""

from __future__ import annotations

import asyncio
import logging

from services import background
from services.store import Store

log = logging.getLogger("arop.reviewer")


class TaskChanges:
    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._head = -1
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None

    async def current(self) -> int:
        """The audit chain's head now: what a new watcher compares later heads with."""
        seq, _ = await self.store.audit_head()
        return seq

    async def wait(self, seen: int, timeout: float) -> int | None:
        """The head once it differs from `seen`, or None after `timeout` seconds."""
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="reviewer-live-poll")
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._head > seen), timeout)
                return self._head
        except TimeoutError:
            return None
        finally:
            self._watchers -= 1

    async def _poll(self) -> None:
        """Read the head while anyone watches; stop when nobody does."""
        while self._watchers:
            try:
                head = await self.current()
            except Exception as exc:  # the store down (or worse): inboxes go on, updates resume after
                log.warning("live updates: cannot read the audit head", extra={"error": str(exc)[:200]})
            else:
                if head != self._head:
                    async with self._changed:
                        self._head = head
                        self._changed.notify_all()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        await background.stop(self._poller)
