"""Change notifications between instances over Redis pub/sub (optional).

Correctness never depends on this: every instance polls the store every
`policy.reload_interval` anyway. Redis only makes a change written through one replica visible
on the others at once instead of at the next poll. Without Redis, or while it is down, the
poll does the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from services import background

log = logging.getLogger("arop.changes")
CHANNEL = "arop:changes"
RETRY_SECONDS = 2.0


class ChangeFeed:
    def __init__(self, url: str) -> None:
        self._redis = redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._task: asyncio.Task[None] | None = None

    async def publish(self, topic: str) -> None:
        try:
            await self._redis.publish(CHANNEL, topic)
        except (RedisError, OSError) as exc:
            log.warning("could not publish a change notification; other instances will poll", extra={"error": str(exc)})

    def start(self, on_change: Callable[[str], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._listen(on_change), name="change-feed")

    async def _listen(self, on_change: Callable[[str], Awaitable[None]]) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                        if message is not None:
                            await on_change(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or a refresh failure: retry, the poll covers us meanwhile
                log.warning("change feed interrupted; retrying", extra={"error": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)

    async def close(self) -> None:
        await background.stop(self._task)
        await self._redis.aclose()
