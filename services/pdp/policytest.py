"""Declarative policy tests kept in a bundle (`arop policy test BUNDLE`), like `opa test` or
Cerbos test suites.

    bundle/tests/<name>.json
    {
      "description": "…",
      "entities": [ … ],              optional fixtures, added over the bundle's entities
      "cases": [
        {"name": "…", "request": {AuthZEN evaluation}, "expected": true},
        {"name": "…", "request": {…}, "expected": false,
         "reason": "forbidden", "policies": ["frozen"], "requestable": ["owner_approval"]},
        {"name": "…", "request": {AuthZEN evaluations batch}, "expected": [true, false]},
        {"name": "…", "request": {…}, "client_evidence": {"type": "mandate", "claims": {…}},
         "expected": true}
      ]
    }

Cases run through the same code as the HTTP API (request decoding, batch planning and
semantics, the engine), so a passing test means the service decides the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
import msgspec

from profiles.authzen.errors import InvalidRequest
from profiles.authzen.evaluation import BatchPlan, execute_batch, plan_evaluations
from profiles.authzen.model import Decision, EvaluationRequest, EvaluationsRequest
from profiles.authzen.transport import decode_body
from services.pdp.bundle import TESTS_DIR, Bundle, check_entities
from services.pdp.engine import CLIENT_EVIDENCE, Engine
from services.pdp.entities import EntityIndex, action_records
from services.store.records import EntityRecord


class TestCase(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    request: msgspec.Raw
    expected: bool | list[bool]
    reason: str | None = None
    policies: list[str] | None = None
    requestable: list[str] | None = None
    challenge: list[str] | None = None
    # Client evidence the service would have verified (a PEP cannot send it in `context`).
    client_evidence: dict[str, Any] | None = None


class TestSuite(msgspec.Struct, forbid_unknown_fields=True):
    cases: list[TestCase]
    description: str = ""
    entities: list[EntityRecord] = []


class CaseResult(msgspec.Struct):
    suite: str
    name: str
    passed: bool
    detail: str = ""


def load_suites(bundle_path: Path) -> dict[str, TestSuite]:
    suites: dict[str, TestSuite] = {}
    for file in sorted((bundle_path / TESTS_DIR).glob("*.json")):
        name = file.relative_to(bundle_path).as_posix()
        try:
            suites[name] = msgspec.json.decode(file.read_bytes(), type=TestSuite)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ValueError(f"{name}: {exc}") from None
        problems = check_entities(suites[name].entities)
        if problems:
            raise ValueError(f"{name}: entities: {'; '.join(problems)}")
    return suites


def run_suites(bundle: Bundle, suites: dict[str, TestSuite]) -> list[CaseResult]:
    results: list[CaseResult] = []
    for suite_name, suite in suites.items():
        engine = Engine(bundle, EntityIndex(bundle.entities, suite.entities, action_records(bundle.actions)))
        for case in suite.cases:
            try:
                detail = _run_case(engine, case)
            except InvalidRequest as exc:
                detail = f"invalid request: {exc.message}"
            results.append(CaseResult(suite_name, case.name, not detail, detail))
    return results


def _run_case(engine: Engine, case: TestCase) -> str:
    if isinstance(case.expected, list):
        plan = plan_evaluations(decode_body(case.request, EvaluationsRequest), max_items=10_000)
        if not isinstance(plan, BatchPlan):
            return "a batch case needs a non-empty evaluations array"
        got = [d.decision for d in execute_batch(plan, lambda items: [Decision(o.allowed) for o in engine.evaluate(list(items))])]
        return "" if got == case.expected else f"expected {case.expected}, got {got}"
    verified = [{CLIENT_EVIDENCE: case.client_evidence}] if case.client_evidence else None
    outcome = engine.evaluate([decode_body(case.request, EvaluationRequest)], verified)[0]
    problems = []
    if outcome.allowed is not case.expected:
        problems.append(f"expected decision {case.expected}, got {outcome.allowed} ({outcome.reason})")
    if case.reason is not None and outcome.reason != case.reason:
        problems.append(f"expected reason {case.reason!r}, got {outcome.reason!r}")
    if case.policies is not None and sorted(outcome.policies) != sorted(case.policies):
        problems.append(f"expected determining policies {sorted(case.policies)}, got {sorted(outcome.policies)}")
    if case.requestable is not None:
        got_templates = sorted(p.requestable or "" for p in outcome.requestable)
        if got_templates != sorted(case.requestable):
            problems.append(f"expected requestable through {sorted(case.requestable)}, got {got_templates}")
    if case.challenge is not None:
        got_types = sorted(p.challenge or "" for p in outcome.challenges)
        if got_types != sorted(case.challenge):
            problems.append(f"expected challenges {sorted(case.challenge)}, got {got_types}")
    return "; ".join(problems)
