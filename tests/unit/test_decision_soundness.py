"""Regression tests for wrong allows found in review: every answer must equal what Cedar says
when evaluating the request against the whole entity store, alone."""

from __future__ import annotations

import os
from pathlib import Path

import cedarpy
import pytest

from profiles.authzen.model import Action, EvaluationRequest, Resource, Subject
from services.pdp.bundle import BundleError, check_entities, load_bundle
from services.pdp.engine import Engine
from services.pdp.entities import EntityIndex, action_records
from services.pdp.runtime import PolicyRuntime
from services.store import StoreUnavailable
from services.store.records import EntityChanges, EntityRecord, EntityUid


def ref(kind: str, id_: str) -> dict[str, dict[str, str]]:
    return {"__entity": {"type": kind, "id": id_}}


def engine(tmp_path: Path, schema: str, policies: str, *entities: EntityRecord) -> Engine:
    path = tmp_path / "bundle"
    path.mkdir(exist_ok=True)
    (path / "schema.cedarschema").write_text(schema)
    (path / "policies.cedar").write_text(policies)
    bundle = load_bundle(path)
    return Engine(bundle, EntityIndex(bundle.entities, entities, action_records(bundle.actions)))


def ask(subject: tuple[str, str], action: str, resource: tuple[str, str], sp: dict | None = None, rp: dict | None = None, context: dict | None = None) -> EvaluationRequest:
    return EvaluationRequest(Subject(*subject, sp), Action(action), Resource(*resource, rp), context)


def whole_store(engine_: Engine, request: EvaluationRequest, entities: list[EntityRecord]) -> bool:
    """Cedar's own answer with every stored entity present (no slicing)."""
    index = EntityIndex(entities)
    document = "[" + ",".join(f.decode() for f in index.fragments.values()) + "]"
    text = (engine_.bundle.path / "policies.cedar").read_text()
    result = cedarpy.is_authorized(
        {"principal": {"type": request.subject.type, "id": request.subject.id}, "action": {"type": "Action", "id": request.action.name},
         "resource": {"type": request.resource.type, "id": request.resource.id}, "context": request.context or {}},
        text,
        document,
    )
    return result.allowed


def test_batch_items_never_see_entities_another_item_sent(tmp_path: Path) -> None:
    schema = "entity Dept = { public: Bool }; entity User = { dept: Dept }; entity Doc = { owner: User };\naction read appliesTo { principal: User, resource: [Doc, Dept] };"
    policies = '@id("public-dept-docs") permit (principal, action == Action::"read", resource is Doc) when { resource.owner.dept.public };'
    stored = [EntityRecord("Doc", "d1", {"owner": ref("User", "bob")}), EntityRecord("User", "bob", {"dept": ref("Dept", "secret")}), EntityRecord("Dept", "secret", {"public": False})]
    e = engine(tmp_path, schema, policies, *stored)
    doc = ask(("User", "alice"), "read", ("Doc", "d1"))
    forged = ask(("User", "alice"), "read", ("Dept", "secret"), rp={"public": True})
    assert [o.allowed for o in e.evaluate([doc])] == [False]
    assert [o.allowed for o in e.evaluate([forged, doc])] == [False, False]
    assert [o.allowed for o in e.evaluate([doc, forged])] == [False, False]


@pytest.mark.parametrize(
    ("condition", "request_context"),
    [
        ('context has delegate && context.delegate in Group::"suspended"', {"delegate": ref("User", "mallory")}),
        ('resource.owner has manager && resource.owner.manager in Group::"suspended"', None),
        ('Settings::"global" has lockdown && Settings::"global".lockdown', None),
    ],
    ids=["reference-in-context", "two-hops-then-group", "policy-literal"],
)
def test_every_entity_a_forbid_can_reach_is_in_the_slice(tmp_path: Path, condition: str, request_context: dict | None) -> None:
    schema = (
        "entity Group; entity Settings = { lockdown?: Bool }; entity User in [Group] = { manager?: User };\n"
        "entity Doc = { owner: User };\n"
        "action read appliesTo { principal: User, resource: Doc, context: { delegate?: User } };"
    )
    policies = f'@id("all") permit (principal, action, resource);\n@id("guard") forbid (principal, action, resource) when {{ {condition} }};'
    stored = [
        EntityRecord("User", "mallory", parents=[EntityUid("Group", "suspended")]),
        EntityRecord("User", "ann", {"manager": ref("User", "mallory")}),
        EntityRecord("Doc", "d1", {"owner": ref("User", "ann")}),
        EntityRecord("Settings", "global", {"lockdown": True}),
    ]
    e = engine(tmp_path, schema, policies, *stored)
    request = ask(("User", "zed"), "read", ("Doc", "d1"), context=request_context)
    assert whole_store(e, request, stored) is False
    outcome = e.evaluate([request])[0]
    assert (outcome.allowed, outcome.reason, outcome.policies) == (False, "forbidden", ["guard"])


def test_shared_answers_never_cross_to_a_resource_referenced_from_elsewhere(tmp_path: Path) -> None:
    schema = "entity User = { assigned?: Doc }; entity Doc = { open?: Bool };\naction edit appliesTo { principal: User, resource: Doc };"
    policies = '@id("assigned-open") permit (principal, action == Action::"edit", resource) when { principal has assigned && principal.assigned has open && principal.assigned.open };'
    e = engine(tmp_path, schema, policies)
    assert e.bundle.resource_identity_free
    a = ask(("User", "alice"), "edit", ("Doc", "d1"), sp={"assigned": ref("Doc", "d1")}, rp={"open": True})
    b = ask(("User", "alice"), "edit", ("Doc", "d2"), sp={"assigned": ref("Doc", "d1")}, rp={"open": True})
    c = ask(("User", "carol"), "edit", ("Doc", "d1"), rp={"open": False})
    alone = [e.evaluate([r])[0].allowed for r in (a, c, b)]
    assert alone == [True, False, False]
    assert [o.allowed for o in e.evaluate([a, c, b])] == alone


def test_entity_data_cannot_redefine_action_groups(tmp_path: Path) -> None:
    schema = 'entity User; entity Doc;\naction "writeOps";\naction delete in ["writeOps"] appliesTo { principal: User, resource: Doc };'
    policies = '@id("all") permit (principal, action, resource);\n@id("no-writes-for-interns") forbid (principal == User::"intern", action in Action::"writeOps", resource);'
    sneaky = EntityRecord("Action", "delete")
    assert check_entities([sneaky]) == ["[0] Action entities come from the schema, not from entity data"]
    e = engine(tmp_path, schema, policies, sneaky)  # even if such a record reached the index
    assert e.evaluate([ask(("User", "intern"), "delete", ("Doc", "d"))])[0].reason == "forbidden"


def test_a_misspelt_tier_annotation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="did you mean @requestable"):
        engine(tmp_path, "entity User; entity Doc; action read appliesTo { principal: User, resource: Doc };", '@Requestable("x") permit (principal, action, resource);')


class FlakyStore:
    fail = False

    async def entity_changes(self, since: int) -> EntityChanges:
        if self.fail:
            raise StoreUnavailable("blip")
        return EntityChanges(since, [], [])


def small_bundle(tmp_path: Path, policies: str) -> Path:
    path = tmp_path / "bundle"
    path.mkdir()
    (path / "schema.cedarschema").write_text("entity User; entity Doc; action read appliesTo { principal: User, resource: Doc };")
    (path / "policies.cedar").write_text(policies)
    return path


async def started(path: Path, store: FlakyStore) -> PolicyRuntime:
    runtime = PolicyRuntime(path, store, reload_interval=3600, max_depth=32)  # type: ignore[arg-type]
    await runtime.start()
    return runtime


async def test_a_new_bundle_goes_live_even_while_the_store_is_down(tmp_path: Path) -> None:
    path = small_bundle(tmp_path, '@id("open") permit (principal, action, resource);')
    mallory = ask(("User", "mallory"), "read", ("Doc", "d1"))
    store = FlakyStore()
    runtime = await started(path, store)
    assert runtime.current().evaluate([mallory])[0].allowed
    (path / "revoke.cedar").write_text('@id("revoke") forbid (principal == User::"mallory", action, resource);')
    store.fail = True
    with pytest.raises(StoreUnavailable):
        await runtime.refresh()
    assert runtime.current().evaluate([mallory])[0].reason == "forbidden"
    await runtime.stop()


async def test_bundle_changes_are_noticed_even_when_size_and_mtime_stay(tmp_path: Path) -> None:
    path = small_bundle(tmp_path, '@id("open") permit (principal, action, resource);\n@id("ban") forbid (principal == User::"alice", action, resource);')
    policies = path / "policies.cedar"
    os.utime(policies, (315532800, 315532800))
    bobby = ask(("User", "bobby"), "read", ("Doc", "d1"))
    runtime = await started(path, FlakyStore())
    assert runtime.current().evaluate([bobby])[0].allowed
    policies.write_text(policies.read_text().replace('"alice"', '"bobby"'))  # same size
    os.utime(policies, (315532800, 315532800))  # same mtime, as `cp -p` or a fixed-epoch build
    await runtime.refresh()
    assert runtime.current().evaluate([bobby])[0].reason == "forbidden"
    await runtime.stop()


async def test_a_reload_that_cannot_even_read_the_files_is_reported(tmp_path: Path) -> None:
    path = small_bundle(tmp_path, '@id("open") permit (principal, action, resource);')
    runtime = await started(path, FlakyStore())
    (path / "broken.cedar").write_bytes(b"\xff\xfe not utf-8")
    await runtime.refresh()
    assert runtime.last_bundle_error and "UnicodeDecodeError" in runtime.last_bundle_error
    assert runtime.current().evaluate([ask(("User", "u"), "read", ("Doc", "d"))])[0].allowed
    await runtime.stop()
