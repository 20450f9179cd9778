"""The authorization-relevant context members of a bundle (ARAP AR-17, AR-19, D-ARAP-9):
what a policy can read binds, nothing else does, and a policy reading the context whole makes
every member the request sends bind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.pdp import cedar
from services.pdp.bundle import load_bundle
from services.pdp.context_members import RESERVED_CONTEXT, bundle_members, request_members, used_members

AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"

SCHEMA = """
entity User;
entity Doc;
type Ctx = { amount?: Long, level?: Long, note?: String, risk?: Long, time?: Long };
action read appliesTo { principal: User, resource: Doc, context: Ctx };
"""

STEP = '[[workflows.review.steps]]\nname = "a"\napprovers = [{ ids = [{ type = "User", id = "carol" }] }]\n'


def policy(condition: str) -> dict[str, Any]:
    (body,) = cedar.policy_to_json(f"permit (principal, action, resource) when {{ {condition} }};")["staticPolicies"].values()
    return body  # type: ignore[no-any-return]


def write_bundle(tmp_path: Path, policies: str, workflows: str = "") -> Path:
    (tmp_path / "schema.cedarschema").write_text(SCHEMA)
    (tmp_path / "policies.cedar").write_text(policies)
    if workflows:
        (tmp_path / "workflows.toml").write_text(workflows)
    return tmp_path


@pytest.mark.parametrize(
    ("condition", "members"),
    [
        ("context.amount <= 5", {"amount"}),
        ("context has amount", {"amount"}),
        ('context["two words"] == 1', {"two words"}),
        ("context has a.b && context.a.b == 1", {"a"}),  # `has a.b` is `has a && context.a has b`
        ("principal.x == context.z.y", {"z"}),
        ('context.s like "a*" && [context.t].contains(1) && (if context has u then context.u else 1) == 2', {"s", "t", "u"}),
        ('context.amount.lessThan(decimal("1.0"))', {"amount"}),
        ("true", set()),
    ],
)
def test_ar_17_members_read_as_context_dot_name_or_context_has_name(condition: str, members: set[str]) -> None:
    assert used_members(policy(condition)) == frozenset(members)


@pytest.mark.parametrize(
    "condition",
    ["context == {}", "context is X", "{Value: context} == {Value: {}}", "[context].contains({})", "context.amount == 1 && context == {}"],
)
def test_ar_17_context_read_whole_binds_every_member(condition: str) -> None:
    assert used_members(policy(condition)) is None
    assert bundle_members([policy("context.amount == 1"), policy(condition)]) is None


def test_ar_17_the_bundle_set_is_the_union_without_reserved_names() -> None:
    policies = [policy("context.amount <= 5"), policy("context has client_evidence && context.level > 1"), policy("context has approval && context has action_properties")]
    assert bundle_members(policies) == frozenset({"amount", "level"})
    assert RESERVED_CONTEXT == {"action_properties", "client_evidence", "approval"}


def test_ar_17_a_whole_context_bundle_binds_what_the_request_sent_minus_reserved_names() -> None:
    context = {"amount": 1, "note": "x", "approval": {"id": "a"}, "client_evidence": {}, "action_properties": {}}
    assert request_members(None, context) == frozenset({"amount", "note"})
    assert request_members(None, None) == frozenset()
    assert request_members(frozenset({"amount", "level"}), context) == frozenset({"amount", "level"})


def test_ar_19_members_no_policy_reads_never_bind(tmp_path: Path) -> None:
    """A volatile `time` the PEP sends, and `note` that no condition reads, stay out of the set."""
    bundle = load_bundle(write_bundle(tmp_path, "permit (principal, action, resource) when { context has level && context.level < 3 };"))
    assert bundle.context_members == frozenset({"level"})
    assert request_members(bundle.context_members, {"level": 1, "time": 1700000000, "note": "x"}) == frozenset({"level"})


def test_ar_17_tiered_policies_and_auto_approval_conditions_count(tmp_path: Path) -> None:
    policies = (
        'permit (principal, action, resource) when { context has level && context.level < 3 };\n'
        '@requestable("review") permit (principal, action, resource) when { context has amount && context.amount < 10 };\n'
        'forbid (principal, action, resource) when { context has note && context.note == "stop" };\n'
    )
    workflows = '[workflows.review]\nauto_approve = "context has risk && context.risk < 2"\n' + STEP
    bundle = load_bundle(write_bundle(tmp_path, policies, workflows))
    assert bundle.context_members == frozenset({"level", "amount", "note", "risk"})


def test_ar_17_a_bundle_reading_the_context_whole_has_no_fixed_set(tmp_path: Path) -> None:
    bundle = load_bundle(write_bundle(tmp_path, "permit (principal, action, resource) when { context has level && context.level < 3 };\nforbid (principal, action, resource) when { [context].contains(context) && false };\n"))
    assert bundle.context_members is None


def test_agents_bundle_binds_the_amount_only() -> None:
    """`client_evidence` is read by policies but is reserved: only verified evidence fills it."""
    assert load_bundle(AGENTS).context_members == frozenset({"amount"})
