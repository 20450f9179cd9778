"""The decisions of the AuthZEN evaluation endpoints, ARAP included (spec/arap.md §2, §12).

A decision is made synchronously: the batch semantics decide item by item and stop at the
trigger (profiles.authzen.evaluation.execute_batch), so whatever awaits is split around it.

- before (`prefetch`): for a request carrying `context.approval`, the keys that may verify its
  `state` and its stored approval record;
- during (`decide`): the engine's outcome, and the approval's verification, give each decision
  its boolean;
- after (`finish`): binding tokens are signed and evaluations recorded (before answering: the
  ARS must resolve an `evaluation_id` as soon as the PEP holds it), re-evaluations audited.

A request that is neither requestable nor carries an approval takes none of these steps: the
plain decision path stays as fast as it was, and loads no key and no JOSE library.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar

from profiles.arap.discovery import is_https_or_loopback, with_access_request
from profiles.arap.model import format_instant
from profiles.authzen.model import Decision, EvaluationRequest, Metadata
from services.auth import Caller
from services.config import Config
from services.pdp.context_members import APPROVAL
from services.pdp.engine import Engine, Outcome
from services.store import StoreUnavailable
from services.store.records import ApprovalRecord, AuditDraft

if TYPE_CHECKING:
    from profiles.arap.approval import ApprovalRecord as VerifiableRecord
    from profiles.arap.signed import KeyResolver

log = logging.getLogger("arop.pdp")
APPROVAL_REQUIRED = "approval_required"  # `context.reason` of a requestable denial (AR-12)


def to_decision(outcome: Outcome, expose_policy_ids: bool) -> Decision:
    """The wire Decision (AZ-4). A denial says why in a machine-readable `reason`, names the
    determining policies when configured to, and carries a request problem as `error`."""
    if outcome.allowed:
        return Decision(True)
    context: dict[str, Any] = {"reason": outcome.reason}
    if expose_policy_ids and outcome.policies:
        context["policies"] = outcome.policies
    if outcome.reason in ("unsupported_value", "unknown_entity_type"):
        context["error"] = {"status": 400, "message": outcome.error}
    elif outcome.reason == "evaluation_error":
        context["error"] = {"status": 500, "message": "the policy engine could not evaluate this request"}
    return Decision(False, context)


def issues_access_requests(config: Config) -> bool:
    """AR-6: a denial is requestable only with an Access Request Endpoint a PEP can use, which
    (D-ARAP-13) is an https URL, or http on loopback for the out-of-the-box local service."""
    return _usable(config.access_request_endpoint())


@functools.lru_cache(maxsize=16)
def _usable(url: str) -> bool:
    return is_https_or_loopback(url)


def with_arap_metadata(config: Config, metadata: Metadata) -> Metadata:
    """AR-1..AR-3: the Access Request Endpoint, the `jwks_uri` that verifies binding tokens and
    approval states (served by services/ops.py) and the capability, when requests are issued."""
    if not issues_access_requests(config):
        return metadata
    jwks_uri = f"{config.server.base_url()}/.well-known/jwks.json"
    return with_access_request(metadata, access_request_endpoint=config.access_request_endpoint(), jwks_uri=jwks_uri)


def requestable_templates(outcome: Outcome) -> list[str]:
    """The workflows through which this denial is requestable: those of the requestable permits
    that would match, when standing access found no permit and no forbid matched (DESIGN §3)."""
    if outcome.reason != "no_matching_permit":
        return []
    return [permit.requestable for permit in outcome.requestable if permit.requestable is not None]


def challenge_types(outcome: Outcome) -> list[str]:
    """The client evidence types the `@challenge` permits that would match name, in policy
    order, when standing access found no permit and no forbid matched (DESIGN §3)."""
    if outcome.reason != "no_matching_permit":
        return []
    return [permit.challenge for permit in outcome.challenges if permit.challenge is not None]


def requestable_template(outcome: Outcome) -> str | None:
    """The workflow a requestable denial names: the first requestable permit's."""
    templates = requestable_templates(outcome)
    return templates[0] if templates else None


def carries_approval(request: EvaluationRequest) -> bool:
    return bool(request.context) and APPROVAL in request.context  # type: ignore[operator]


def _arap() -> ModuleType:
    """services.pdp.arap, loaded when first needed: it pulls in joserfc (~15 MiB a worker)."""
    from services.pdp import arap

    return arap


class _Pending(msgspec.Struct):
    """A requestable denial whose ARAP members are added after deciding. `reevaluation` is the
    reason of a denied re-evaluation (which keeps its own `reason`), None for a first denial."""

    decision: Decision
    request: EvaluationRequest
    template: str
    reevaluation: str | None = None


class DecisionRun:
    """The decisions of one HTTP request: `prefetch` when `carries_approval`, `decide` (as
    often as the batch semantics ask), then `finish` when `unfinished`."""

    def __init__(self, app: Litestar, caller: Caller, explain: bool) -> None:
        self.app = app
        self.config: Config = app.state.config
        self.engine: Engine = app.state.runtime.current()
        self.caller = caller
        self.explain = explain
        self._now: datetime | None = None
        self._pending: list[_Pending] = []
        self._audit: list[AuditDraft] = []
        self._approvals: dict[str, ApprovalRecord | None] = {}
        self._resolvers: dict[str | None, KeyResolver] = {}

    @property
    def now(self) -> datetime:
        """One instant for the whole request: what approvals are checked against (a revocation
        applies from its very instant, AR-71) and audited at. What is issued is stamped in
        whole seconds (D-ARAP-10)."""
        if self._now is None:
            self._now = datetime.now(UTC)
        return self._now

    @property
    def unfinished(self) -> bool:
        return bool(self._pending or self._audit)

    async def prefetch(self, requests: Iterable[object]) -> None:
        """What verifying each `context.approval` needs and cannot await while deciding: the
        keys its `state` may be signed with, trusted for the ARS identifier only (AR-69), and
        its stored record, which is authoritative for revocation (AR-71, D-ARAP-11)."""
        issuers = frozenset({self.config.ars_identifier()})
        for request in requests:
            if not isinstance(request, EvaluationRequest) or not carries_approval(request):
                continue
            approval = request.context[APPROVAL]  # type: ignore[index]
            state = _state(approval)
            if state not in self._resolvers:
                self._resolvers[state] = await self.app.state.key_ring.resolver(state, issuers)
            approval_id = _approval_id(approval)
            if approval_id is not None and approval_id not in self._approvals:
                self._approvals[approval_id] = await self.app.state.store.get_approval(approval_id)

    def decide(self, requests: Sequence[EvaluationRequest]) -> list[Decision]:
        return [decision for decision, _ in self.decide_with_outcomes(requests)]

    def decide_with_outcomes(
        self, requests: Sequence[EvaluationRequest], extra_context: Sequence[dict[str, Any] | None] | None = None
    ) -> list[tuple[Decision, Outcome]]:
        """`decide`, with the engine's outcome of each request (for the sidecar's challenge
        tier) and `extra_context`: members the service verified itself (client evidence)."""
        outcomes = self.engine.evaluate(requests, extra_context)
        return [(self._decision(request, outcome), outcome) for request, outcome in zip(requests, outcomes)]

    def _decision(self, request: EvaluationRequest, outcome: Outcome) -> Decision:
        if carries_approval(request):
            return self._reevaluation(request, outcome)
        decision = to_decision(outcome, self.explain)
        template = requestable_template(outcome)
        if template is not None and issues_access_requests(self.config):
            self._pending.append(_Pending(decision, request, template))
        return decision

    def _reevaluation(self, request: EvaluationRequest, outcome: Outcome) -> Decision:
        """§12.1-§12.3. Standing access allows as usual. Otherwise the approval must verify
        (AR-66..AR-72) and current policy must still make the request requestable through the
        very workflow that approved it: no forbid, no error, that template's requestable permit
        matching. An approval never overrides current policy (AR-71)."""
        approval = request.context[APPROVAL]  # type: ignore[index]
        if outcome.allowed:
            self._audit_reevaluation(approval, True, "permitted")
            return Decision(True)
        arap = _arap()
        verdict = arap.verify_approval(
            approval,
            arap.request_covered(request),
            resolve_key=self._resolvers.get(_state(approval), _no_key),
            audience=self.config.server.base_url(),
            now=self.now,
            lookup=self._lookup,
            caller=self.caller.name,
        )
        if isinstance(verdict, arap.RejectedApproval):
            return self._denied_reevaluation(request, outcome, approval, verdict.reason)
        stored = self._approvals.get(verdict.approval_id)
        if stored is None or not stored.template or stored.template not in requestable_templates(outcome):
            return self._denied_reevaluation(request, outcome, approval, "policy_denied")
        self._audit_reevaluation(approval, True, "approved")
        return Decision(True, {"approval": {"id": verdict.approval_id, "approved_until": format_instant(verdict.approved_until)}})

    def _denied_reevaluation(self, request: EvaluationRequest, outcome: Outcome, approval: Any, reason: str) -> Decision:
        """§12.3: the reason, and `next_action`; `request` only with a fresh `access_request`,
        which the request gets when it is still requestable."""
        context = dict(to_decision(outcome, self.explain).context or {})
        context["reason"] = reason
        template = requestable_template(outcome)
        fresh = template is not None and _arap().next_action_for(reason, True) == "request" and issues_access_requests(self.config)
        context["next_action"] = _arap().next_action_for(reason, fresh)
        decision = Decision(False, context)
        if fresh:
            assert template is not None
            self._pending.append(_Pending(decision, request, template, reason))
        self._audit_reevaluation(approval, False, reason)
        return decision

    def _lookup(self, approval_id: str) -> VerifiableRecord | None:
        stored = self._approvals.get(approval_id)
        return None if stored is None else _arap().lookup_record(stored, self.now)

    def _audit_reevaluation(self, approval: Any, allowed: bool, reason: str) -> None:
        """One audit event per re-evaluation carrying an approval (AR-89): who presented which
        approval, and what came of it."""
        approval_id = _approval_id(approval)
        stored = self._approvals.get(approval_id) if approval_id is not None else None
        data: dict[str, Any] = {"decision": allowed, "reason": reason}
        if approval_id is not None:
            data["approval_id"] = approval_id
        self._audit.append(
            AuditDraft(at=self.now, kind="reevaluation", actor=self.caller.name, task_id=stored.task_id if stored else None, data=data)
        )

    async def finish(self) -> None:
        """Complete the requestable denials, then write the audit events."""
        if self._pending:
            await self._issue_pending()
        if self._audit:
            await self.app.state.store.append_audit(self._audit)

    async def _issue_pending(self) -> None:
        """Sign and record each requestable denial. One that cannot be issued (AR-9..AR-11), or
        whose evaluation the store cannot keep, stays a plain denial (AR-9: no unverifiable
        binding material is handed out)."""
        arap = _arap()
        key = None
        if self.config.access_requests.binding != "evaluation_id":
            key = await self.app.state.key_ring.current()
        issued_at = self.now.replace(microsecond=0)
        for pending in self._pending:
            reason = None if pending.reevaluation else APPROVAL_REQUIRED
            try:
                issued = arap.issue_access_request(self.config, self.engine.bundle, pending.request, pending.template, key=key, now=issued_at, reason=reason)
                if issued.record is not None:
                    await self.app.state.store.record_evaluation(issued.record)
            except (ValueError, StoreUnavailable) as exc:
                log.warning("a requestable denial is answered as a plain denial", extra={"error": str(exc)})
                if pending.reevaluation is not None:
                    assert pending.decision.context is not None
                    pending.decision.context["next_action"] = arap.next_action_for(pending.reevaluation, False)
                continue
            assert pending.decision.context is not None
            pending.decision.context.update(issued.context)


def _approval_id(approval: Any) -> str | None:
    approval_id = approval.get("id") if isinstance(approval, dict) else None
    return approval_id if isinstance(approval_id, str) else None


def _state(approval: Any) -> str | None:
    """The compact JWS of `approval.state`, the key of its prefetched resolver (None: no JWS)."""
    state = approval.get("state") if isinstance(approval, dict) else None
    return state if isinstance(state, str) else None


def _no_key(iss: str | None, kid: str | None) -> None:
    """The resolver of a request that was not prefetched: nothing verifies."""
    return None
