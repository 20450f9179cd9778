"""The admin API: entity data of the policy information point, and bundle status.

Every route needs a caller with the `admin` scope, on loopback too. Writes go to the store;
this instance refreshes at once (read-your-writes), every other instance within
`policy.reload_interval`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, FromQuery

from services.http import Problem, authenticate, decode_json_body, json_response
from services.pdp.bundle import check_entities
from services.pdp.runtime import PolicyRuntime
from services.store import Store
from services.store.records import AuditDraft, EntityRecord, EntityUid

AnyRequest = Request[Any, Any, Any]
MAX_ENTITIES_PER_CALL = 10_000


class EntitiesBody(msgspec.Struct, forbid_unknown_fields=False):
    entities: list[EntityRecord]


class UidsBody(msgspec.Struct, forbid_unknown_fields=False):
    entities: list[EntityUid]


async def _body(request: AnyRequest, type_: type) -> Any:
    authenticate(request, "admin")
    body = await decode_json_body(request, type_)
    if len(body.entities) > MAX_ENTITIES_PER_CALL:
        raise Problem(400, "Invalid request", f"at most {MAX_ENTITIES_PER_CALL} entities per call")
    return body


async def _changed(request: AnyRequest) -> None:
    """Read-your-writes here; other instances hear it over Redis when configured, else poll."""
    await request.app.state.runtime.refresh()
    if request.app.state.changes:
        await request.app.state.changes.publish("entities")


@post("/entities", status_code=200)
async def upsert_entities(request: AnyRequest) -> Response[bytes]:
    body: EntitiesBody = await _body(request, EntitiesBody)
    problems = check_entities(body.entities)
    if problems:
        raise Problem(400, "Invalid entities", "; ".join(problems[:20]))
    store: Store = request.app.state.store
    revision = await store.upsert_entities(body.entities)
    await _changed(request)
    return json_response({"revision": revision, "upserted": len(body.entities)})


@post("/entities/delete", status_code=200)
async def delete_entities(request: AnyRequest) -> Response[bytes]:
    body: UidsBody = await _body(request, UidsBody)
    store: Store = request.app.state.store
    revision = await store.delete_entities(body.entities)
    await _changed(request)
    return json_response({"revision": revision, "deleted": len(body.entities)})


@get("/entities")
async def get_entity(request: AnyRequest, type: FromQuery[str], id: FromQuery[str]) -> Response[bytes]:
    """The entity as policies see it (the store's version replaces the bundle's), with the
    entities it is transitively in."""
    authenticate(request, "admin")
    runtime: PolicyRuntime = request.app.state.runtime
    engine = runtime.current()
    uid = EntityUid(type, id)
    record = engine.index.records.get(uid)
    if record is None:
        raise Problem(404, "Not Found", f"no entity {type}::{id!r}")
    return json_response({"entity": record, "ancestors": engine.index.ancestors(uid)})


@post("/approvals/{approval_id:str}/revoke", status_code=200)
async def revoke_approval(request: AnyRequest, approval_id: FromPath[str]) -> Response[bytes]:
    """Withdraw an approval: from now on every re-evaluation presenting it is denied
    (`approval_expired`, AR-71). Audited; revoking twice is a 409."""
    caller = authenticate(request, "admin")
    store: Store = request.app.state.store
    approval = await store.get_approval(approval_id)
    if approval is None:
        raise Problem(404, "Not Found", "no such approval")
    now = datetime.now(UTC)
    audit = AuditDraft(at=now, kind="approval.revoked", actor=caller.name, task_id=approval.task_id, data={"approval_id": approval_id})
    if not await store.revoke_approval(approval_id, now, audit=[audit]):
        raise Problem(409, "Conflict", "the approval is already revoked")
    return json_response({"approval_id": approval_id, "revoked_at": now})


@get("/bundle")
async def bundle_status(request: AnyRequest) -> Response[bytes]:
    authenticate(request, "admin")
    runtime: PolicyRuntime = request.app.state.runtime
    bundle = runtime.current().bundle
    return json_response(
        {
            "path": str(bundle.path),
            "version": bundle.version,
            "policies": list(bundle.policies.values()),
            "actions": sorted(bundle.actions),
            "entities": len(runtime.current().index),
            "last_reload_error": runtime.last_bundle_error,
        }
    )


router = Router("/admin/v1", route_handlers=[upsert_entities, delete_entities, get_entity, revoke_approval, bundle_status])
