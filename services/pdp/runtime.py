"""The live policy state of one process: the current Engine, kept fresh.

A background task polls the bundle directory and the store's entity revision every
`reload_interval` seconds. A changed bundle is loaded and validated off to the side and swapped
in only when it is good; a bad one is logged and counted, and the previous version keeps
serving. Stored entities are synchronised incrementally, so every instance (worker process or
replica) picks up admin API changes without a restart.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

from services import background
from services.observability import BUNDLE_RELOADS
from services.pdp.bundle import Bundle, BundleError, bundle_signature, load_bundle
from services.pdp.engine import Engine
from services.pdp.entities import EntityIndex, action_records
from services.store import Store, StoreUnavailable
from services.store.records import EntityRecord, EntityUid

log = logging.getLogger("arop.pdp")


class PolicyRuntime:
    def __init__(self, bundle_path: Path, store: Store, *, reload_interval: float, max_depth: int) -> None:
        self.bundle_path = bundle_path
        self.store = store
        self.reload_interval = reload_interval
        self.max_depth = max_depth
        self.engine: Engine | None = None
        self.last_bundle_error: str | None = None
        self._signature: tuple[tuple[str, str], ...] = ()
        self._stored: dict[EntityUid, EntityRecord] = {}
        self._revision = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the bundle (an invalid bundle at start-up is fatal) and the stored entities."""
        self._signature = bundle_signature(self.bundle_path)
        bundle = await asyncio.to_thread(load_bundle, self.bundle_path)
        await self._sync_entities()
        self._install(bundle)
        log.info("policy bundle loaded", extra={"bundle": str(self.bundle_path), "version": bundle.version, "policies": len(bundle.policies)})
        self._task = asyncio.create_task(self._watch(), name="policy-runtime-watch")

    async def stop(self) -> None:
        await background.stop(self._task)

    def current(self) -> Engine:
        assert self.engine is not None, "PolicyRuntime.start() not awaited"
        return self.engine

    async def refresh(self) -> None:
        """Pick up a changed bundle and changed stored entities now."""
        async with self._lock:
            bundle = self.current().bundle
            signature = bundle_signature(self.bundle_path)
            if signature != self._signature:
                bundle = await self._reload_bundle(bundle)
                # Loading gave a definite answer (a new version, or a rejection to report):
                # until the files change again there is nothing more to learn from them.
                self._signature = signature
            installed = False
            try:
                changed = await self._sync_entities()
            finally:
                # A new bundle goes live even when the store cannot be read right now: it may
                # revoke access (a new forbid) and must not wait for the store to come back.
                if bundle is not self.current().bundle:
                    self._install(bundle)
                    installed = True
            if changed and not installed:
                self._install(bundle)

    async def _reload_bundle(self, current: Bundle) -> Bundle:
        try:
            bundle = await asyncio.to_thread(load_bundle, self.bundle_path)
        except Exception as exc:  # a BundleError, or files a reader cannot even decode
            problems = [str(p) for p in exc.problems] if isinstance(exc, BundleError) else [f"{type(exc).__name__}: {exc}"]
            self.last_bundle_error = "; ".join(problems)
            BUNDLE_RELOADS.labels("rejected").inc()
            log.error("policy bundle rejected; the previous version keeps serving", extra={"problems": problems, "serving": current.version})
            return current
        self.last_bundle_error = None
        if bundle.version != current.version:
            BUNDLE_RELOADS.labels("loaded").inc()
            log.info("policy bundle reloaded", extra={"version": bundle.version, "previous": current.version})
            return bundle
        return current

    async def _sync_entities(self) -> bool:
        changes = await self.store.entity_changes(self._revision)
        if changes.revision == self._revision:
            return False
        if changes.revision < self._revision:
            # The store went back in time (restored from a backup): start over from scratch.
            log.warning("store entity revision went backwards; resynchronising", extra={"was": self._revision, "now": changes.revision})
            self._stored.clear()
            self._revision = 0
            changes = await self.store.entity_changes(0)
        for record in changes.upserted:
            self._stored[record.uid] = record
        for uid in changes.deleted:
            self._stored.pop(uid, None)
        self._revision = changes.revision
        return True

    def _install(self, bundle: Bundle) -> None:
        index = EntityIndex(bundle.entities, self._stored.values(), action_records(bundle.actions))
        self.engine = Engine(bundle, index, max_depth=self.max_depth)
        # The bundle and index live until the next reload: keep their many objects out of the
        # cyclic collector's way (it otherwise rescans them, ~30 ms per gen-2 pass under load).
        gc.collect()
        gc.freeze()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                await self.refresh()
            except StoreUnavailable:
                log.warning("store unavailable; entity changes will be picked up when it returns")
            except Exception:  # keep watching whatever happens: the current engine stays valid
                log.exception("policy refresh failed")
