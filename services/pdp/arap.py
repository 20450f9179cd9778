"""ARAP at the PDP (spec/arap.md §2-§5, §12): what the PDP issues with a requestable denial, and
how it reads a stored approval to verify `context.approval`.

The protocol rules are profiles.arap's; this module supplies them with what only the service
knows: the configuration (identifiers, binding mode, lifetimes), the bundle (member set,
workflows) and the store's records. It signs and verifies, so it pulls in joserfc: the
decision path imports it on first use (services.pdp.decisions), never at start-up.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import msgspec
from joserfc.jwk import ECKey

from profiles.arap.approval import (  # noqa: F401  (re-exported for the decision path)
    ApprovalRecord,
    RejectedApproval,
    next_action_for,
    verify_approval,
)
from profiles.arap.binding import binding_claims, sign_binding_token
from profiles.arap.compare import Covered, Target
from profiles.arap.denial import requestable_denial_context
from profiles.arap.model import AccessRequestHint, JSONObject, format_instant
from profiles.arap.recorded import record_evaluation
from profiles.arap.submission import entity_json
from profiles.authzen.model import EvaluationRequest
from services.access_requests.workflows import Workflow
from services.config import Config
from services.pdp.bundle import Bundle
from services.pdp.context_members import request_members
from services.store import records

REQUEST_SCHEMAS_PATH = "/access/v1/request-schemas"


def request_covered(request: EvaluationRequest) -> Covered:
    """What a denial of `request` binds, or what an approval must cover (AR-22, AR-72): the
    Subject, Resource and Action exactly as the PEP sent them, and its context."""
    target = Target(resource=entity_json(request.resource), action=entity_json(request.action))
    return Covered(subject=entity_json(request.subject), context=request.context, targets=(target,))


class IssuedHint(msgspec.Struct, frozen=True):
    """A requestable denial, ready: the Decision Context members to add (§2) and, on the
    evaluation_id binding path, the record to store before the PEP sees the id (AR-30)."""

    context: JSONObject
    record: records.EvaluationRecord | None


def issue_access_request(
    config: Config,
    bundle: Bundle,
    request: EvaluationRequest,
    template: str,
    *,
    key: ECKey | None,
    now: datetime,
    reason: str | None,
) -> IssuedHint:
    """The ARAP members of a denial of `request` requestable through workflow `template`
    (D-ARAP-9): a fresh `evaluation_id`, `evaluated_at`, `reason` (AR-12: `approval_required`;
    None leaves it to the caller, as a denied re-evaluation does) and `access_request` with the
    hint's expiry, template, display, request schema and, unless binding is by `evaluation_id`
    only, a `binding_token` signed with `key` (AR-23) that also names the template. ValueError
    when the hint would break AR-9..AR-11: the caller then answers a plain denial."""
    settings = config.access_requests
    expires_at = now + timedelta(seconds=settings.hint_ttl)
    evaluation_id = "ev_" + secrets.token_urlsafe(16)
    covered = request_covered(request)
    members = request_members(bundle.context_members, request.context)
    binding_token = None
    if settings.binding in ("both", "token"):
        if key is None:
            raise ValueError("a binding_token needs the signing key")
        claims = binding_claims(
            issuer=config.server.base_url(),
            audience=config.ars_identifier(),
            covered=covered,
            members=members,
            expires_at=expires_at,
            now=now,
            lifetime=timedelta(seconds=settings.token_lifetime),
            jti=secrets.token_urlsafe(16),
            evaluation_id=evaluation_id,
            inline=not settings.binding_hash,
        )
        claims["template"] = template
        binding_token = sign_binding_token(claims, key)
    hint = AccessRequestHint(
        expires_at=format_instant(expires_at),
        template=template,
        binding_token=binding_token,
        **_workflow_hints(config, template, bundle.workflows.get(template)),
    )
    context = requestable_denial_context(hint, evaluation_id=evaluation_id, evaluated_at=now, reason=reason)
    record = None
    if settings.binding in ("both", "evaluation_id"):
        recorded = record_evaluation(evaluation_id=evaluation_id, covered=covered, members=members, expires_at=expires_at, template=template)
        stored = msgspec.structs.asdict(recorded) | {"template": template, "created_at": now, "expires_at": expires_at}
        record = records.EvaluationRecord(**stored)
    return IssuedHint(context, record)


def _workflow_hints(config: Config, template: str, workflow: Workflow | None) -> JSONObject:
    """`display` from the workflow's title and description, and `request_schema_url` when it
    declares a schema of submission additions (AR-33)."""
    if workflow is None:
        return {}
    hints: JSONObject = {}
    display = {name: text for name, text in (("title", workflow.title), ("description", workflow.description)) if text}
    if display:
        hints["display"] = display
    if workflow.request_schema:
        hints["request_schema_url"] = f"{config.server.base_url()}{REQUEST_SCHEMAS_PATH}/{template}"
    return hints


def lookup_record(stored: records.ApprovalRecord, now: datetime) -> ApprovalRecord:
    """The stored approval as the verifier reads it (AR-70, AR-71): an approval record exists
    only for an approved task or item, and it is revoked from `revoked_at` on."""
    return ApprovalRecord(
        approval_id=stored.id,
        task_id=stored.task_id,
        status="approved",
        subject=stored.subject,
        resource=stored.resource,
        action=stored.action,
        context_members=stored.context_members,
        context_values=stored.context_values,
        approved_until=format_instant(stored.approved_until),
        evaluation_id=stored.evaluation_id,
        requester=stored.requester,
        approved_at=format_instant(stored.approved_at),
        revoked=stored.revoked_at is not None and stored.revoked_at <= now,
    )
