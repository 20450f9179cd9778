"""Approval workflows: the ARAP `template` a `@requestable("<template>")` permit names,
declared in the bundle's `workflows.toml` (DESIGN.md §3 "Workflows").

    [workflows.owner_approval]
    title = "Owner approval for a trade"
    request_ttl = "4h"            # a pending task expires after this
    max_approval = "1d"           # approved_until is at most this after the approval
    allow_self_approval = false   # the subject, requester and acting agents never approve
    reveal_to_clients = true      # AROP: an OAuth client may learn the access is requestable
    auto_approve = "context.amount <= 2000"   # optional Cedar condition: approve at once
    risk = "medium"               # low | medium | high | critical: shown to reviewers; high and
                                  # critical approvals need an explicit confirmation in the UI
    request_schema = "schemas/owner_approval.json"   # optional JSON Schema of submissions

    [[workflows.owner_approval.steps]]
    name = "owner"
    quorum = 1
    approvers = [{ attribute = "resource.owner" }]

    [[workflows.owner_approval.steps]]
    name = "risk"
    approvers = [{ group = { type = "Role", id = "risk_officer" } },
                 { ids = [{ type = "User", id = "carol" }] }]
    timeout = "2h"
    on_timeout = "expire"

Steps run in order; a step completes when `quorum` distinct eligible approvers approved, and any
eligible denial denies the task. Separation of duties: unless a step sets
`same_approvers_allowed = true`, nobody who approved an earlier step counts for a later one.
This module parses and validates; the service enforces.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Literal

import msgspec

from services.pdp import cedar
from services.store.records import EntityUid

WORKFLOWS_FILE = "workflows.toml"
_DURATION = re.compile(r"^(\d+)([smhd])$")
Risk = Literal["low", "medium", "high", "critical"]
RISKS: tuple[Risk, ...] = ("low", "medium", "high", "critical")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ATTRIBUTE_PATH = re.compile(r"^(subject|resource)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class WorkflowError(ValueError):
    """A problem in workflows.toml; the message names the key."""


def parse_duration(text: str, key: str) -> timedelta:
    """`30s`, `15m`, `4h`, `7d`: one number and one unit, so a reader never guesses."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) == 0:
        raise WorkflowError(f"{key}: {text!r} is not a duration like 30s, 15m, 4h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class ApproverSelector(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Exactly one of: an attribute path naming the approver entity (`resource.owner`), a
    group whose members approve, or explicit entities."""

    attribute: str | None = None
    group: EntityUid | None = None
    ids: list[EntityUid] | None = None


class Step(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    approvers: list[ApproverSelector]
    quorum: int = 1
    timeout: str | None = None
    on_timeout: Literal["expire", "escalate"] = "expire"
    escalate_to: list[ApproverSelector] = []
    same_approvers_allowed: bool = False


class Workflow(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    steps: list[Step]
    title: str = ""
    description: str = ""
    request_ttl: str = "1d"
    max_approval: str = "1d"
    allow_self_approval: bool = False
    reveal_to_clients: bool = True
    auto_approve: str | None = None
    request_schema: str | None = None
    notify: list[str] = []
    risk: Risk = "medium"


class Workflows(msgspec.Struct, frozen=True):
    """The validated workflows of one bundle version, by template name."""

    by_template: dict[str, Workflow]
    request_schemas: dict[str, dict[str, object]]  # template → parsed JSON Schema

    def get(self, template: str) -> Workflow | None:
        return self.by_template.get(template)


def load_workflows(bundle_root: Path) -> tuple[Workflows, list[str]]:
    """Parse and validate workflows.toml (absent: no workflows); return it with its problems,
    each naming its key. Problems keep the bundle from loading."""
    file = bundle_root / WORKFLOWS_FILE
    if not file.is_file():
        return Workflows({}, {}), []
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        return Workflows({}, {}), [str(exc)]
    problems = [f"{key}: unknown key (workflows live under [workflows.<template>])" for key in data if key != "workflows"]
    declared = data.get("workflows", {})
    if not isinstance(declared, dict):
        return Workflows({}, {}), ["workflows: must be a table of workflows by template name"]
    workflows: dict[str, Workflow] = {}
    for template, table in declared.items():
        try:
            workflows[template] = msgspec.convert(table, Workflow)
        except msgspec.ValidationError as exc:
            problems.append(_describe(exc, f"workflows.{template}"))
    schemas: dict[str, dict[str, object]] = {}
    for template, workflow in workflows.items():
        problems.extend(_check(template, workflow))
        if workflow.request_schema:
            schema, problem = _load_schema(bundle_root, workflow.request_schema, f"workflows.{template}.request_schema")
            if problem:
                problems.append(problem)
            else:
                schemas[template] = schema
    return Workflows(workflows, schemas), problems


def _describe(exc: msgspec.ValidationError, root: str) -> str:
    text = str(exc)
    message, _, where = text.partition(" - at `$")
    return f"{root}{where.rstrip('`')}: {message}"


def _check(template: str, workflow: Workflow) -> list[str]:
    key = f"workflows.{template}"
    durations = [(workflow.request_ttl, f"{key}.request_ttl"), (workflow.max_approval, f"{key}.max_approval")]
    durations += [(step.timeout, f"{key}.steps[{i}].timeout") for i, step in enumerate(workflow.steps) if step.timeout]
    problems = [problem for text, where in durations if (problem := _duration_problem(text, where))]
    if not workflow.steps:
        problems.append(f"{key}.steps: a workflow needs at least one step")
    for index, step in enumerate(workflow.steps):
        where = f"{key}.steps[{index}]"
        if step.quorum < 1:
            problems.append(f"{where}.quorum: must be at least 1")
        if not step.approvers:
            problems.append(f"{where}.approvers: a step needs at least one approver selector")
        if step.on_timeout == "escalate" and not step.escalate_to:
            problems.append(f"{where}.escalate_to: on_timeout = \"escalate\" needs approvers to escalate to")
        for number, selector in enumerate([*step.approvers, *step.escalate_to]):
            problems.extend(_check_selector(selector, f"{where}.approvers[{number}]"))
    if workflow.auto_approve is not None:
        problem = _condition_problem(workflow.auto_approve)
        if problem:
            problems.append(f"{key}.auto_approve: {problem}")
    for target in workflow.notify:
        if not target.startswith(("https://", "mailto:")):
            problems.append(f"{key}.notify: {target!r} must be an https:// or mailto: URI")
    return problems


def auto_approve_policy(condition: str) -> str:
    """The Cedar policy an auto-approval condition stands for: it sees the request's principal,
    action, resource and context like any policy."""
    return f"permit (principal, action, resource) when {{ {condition} }};"


def _condition_problem(condition: str) -> str | None:
    try:
        parsed = cedar.policy_to_json(auto_approve_policy(condition))
    except ValueError as exc:
        return f"not a Cedar condition: {exc}"
    if len(parsed.get("staticPolicies", {})) != 1 or parsed.get("templates"):
        return "must be one Cedar condition, not policy text"
    return None


def _duration_problem(text: str, key: str) -> str | None:
    try:
        parse_duration(text, key)
    except WorkflowError as exc:
        return str(exc)
    return None


def _check_selector(selector: ApproverSelector, where: str) -> list[str]:
    given = [name for name in ("attribute", "group", "ids") if getattr(selector, name) is not None]
    if len(given) != 1:
        return [f"{where}: give exactly one of attribute, group, ids"]
    if selector.attribute is not None and not _ATTRIBUTE_PATH.match(selector.attribute):
        return [f"{where}.attribute: {selector.attribute!r} must be a path like resource.owner or subject.manager"]
    if selector.ids is not None and not selector.ids:
        return [f"{where}.ids: list at least one entity"]
    return []


def _load_schema(root: Path, relative: str, key: str) -> tuple[dict[str, object], str | None]:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        return {}, f"{key}: {relative!r} must be a file inside the bundle"
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, f"{key}: {relative!r} not found in the bundle"
    except json.JSONDecodeError as exc:
        return {}, f"{key}: {relative!r} is not JSON: {exc}"
    if not isinstance(schema, dict):
        return {}, f"{key}: {relative!r} must hold a JSON Schema object"
    return schema, None
