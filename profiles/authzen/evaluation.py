"""Access Evaluation and Access Evaluations (batch) rules (spec/authzen-api.md §4, §5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from profiles.authzen.errors import InvalidRequest
from profiles.authzen.model import (
    Decision,
    EvaluationItem,
    EvaluationRequest,
    EvaluationsRequest,
    EvaluationsSemantic,
)
from profiles.authzen.transport import describe_validation_error

_item_decoder = msgspec.json.Decoder(EvaluationItem)


class ItemError(msgspec.Struct, frozen=True):
    """A batch item that cannot be evaluated: decided `false` with the error in context (AZ-14)."""

    message: str

    def decision(self) -> Decision:
        return Decision(False, {"error": {"status": 400, "message": self.message}})


BatchItem = EvaluationRequest | ItemError


class BatchPlan(msgspec.Struct, frozen=True):
    items: list[BatchItem]
    semantic: EvaluationsSemantic


def plan_evaluations(request: EvaluationsRequest, max_items: int) -> EvaluationRequest | BatchPlan:
    """Resolve a batch request into the single evaluation it stands for (AZ-8) or its items.

    AZ-8: absent or empty `evaluations` behaves exactly like §4 (top-level S/A/R required, 400
    otherwise, single Decision answered). AZ-9: each of the four keys is taken whole from the
    item if present there, else from the top level; no deep merge. AZ-10/§5.5 conformance
    reading: an item still missing an entity after merging is an item error, not a 400.
    AZ-55: the number of items is bounded.
    """
    if not request.evaluations:
        return _require_single(request)
    if len(request.evaluations) > max_items:
        raise InvalidRequest(f"evaluations: at most {max_items} items per request")
    items: list[BatchItem] = []
    for index, raw in enumerate(request.evaluations):
        try:
            item = _item_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            items.append(ItemError(describe_validation_error(exc, f"evaluations[{index}]")))
            continue
        except msgspec.DecodeError:
            items.append(ItemError(f"evaluations[{index}]: must be a JSON object"))
            continue
        items.append(_merge(request, item, index))
    semantic = request.options.evaluations_semantic if request.options else "execute_all"
    return BatchPlan(items, semantic)


def _require_single(request: EvaluationsRequest) -> EvaluationRequest:
    for member in ("subject", "action", "resource"):
        if getattr(request, member) is None:
            raise InvalidRequest(f"{member} is required when evaluations is absent or empty")
    assert request.subject and request.action and request.resource
    return EvaluationRequest(request.subject, request.action, request.resource, request.context)


def _merge(top: EvaluationsRequest, item: EvaluationItem, index: int) -> BatchItem:
    subject = item.subject if item.subject is not None else top.subject
    action = item.action if item.action is not None else top.action
    resource = item.resource if item.resource is not None else top.resource
    context = item.context if item.context is not None else top.context
    for member, value in (("subject", subject), ("action", action), ("resource", resource)):
        if value is None:
            return ItemError(f"evaluations[{index}]: {member} is required (in the item or at top level)")
    assert subject and action and resource
    return EvaluationRequest(subject, action, resource, context)


def execute_batch(
    plan: BatchPlan, evaluate: Callable[[Sequence[EvaluationRequest]], list[Decision]]
) -> list[Decision]:
    """Run a batch under its semantic (AZ-11, AZ-12, AZ-14).

    `execute_all` evaluates every valid item in one call and keeps cardinality and order.
    The short-circuit semantics evaluate item by item and stop at the trigger, which is
    included: later items are never evaluated (not merely dropped from the answer).
    An item error counts as a deny (it is `decision: false`).
    """
    if plan.semantic == "execute_all":
        valid = [item for item in plan.items if isinstance(item, EvaluationRequest)]
        decided = iter(evaluate(valid))
        return [item.decision() if isinstance(item, ItemError) else next(decided) for item in plan.items]
    stop_on = plan.semantic == "permit_on_first_permit"
    decisions: list[Decision] = []
    for item in plan.items:
        decision = item.decision() if isinstance(item, ItemError) else evaluate([item])[0]
        decisions.append(decision)
        if decision.decision is stop_on:
            break
    return decisions
