"""Records the store keeps. Plain msgspec Structs so that they encode to the wire unchanged."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

import msgspec


class EntityUid(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The identity of an entity: AuthZEN `type` + `id` (Cedar `type::"id"`)."""

    type: str
    id: str


class EntityRecord(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    """An entity of the policy information point: attributes and the entities it belongs to.

    `parents` are Cedar parents (`principal in Role::"admin"`), so group and role membership is
    transitive for policies and for search.
    """

    type: str
    id: str
    properties: dict[str, Any] = {}
    parents: list[EntityUid] = []

    @property
    def uid(self) -> EntityUid:
        return EntityUid(self.type, self.id)


class EntityChanges(msgspec.Struct):
    """What changed in the stored entities after a revision, for incremental sync of instances."""

    revision: int
    upserted: list[EntityRecord]
    deleted: list[EntityUid]


class SigningKey(msgspec.Struct):
    """An asymmetric signing key kept in the store. `private_jwk` never leaves the process."""

    kid: str
    alg: str
    private_jwk: str
    created_at: datetime
    retires_at: datetime | None = None


# -- Access requests (ARAP) -----------------------------------------------------------------
# Values that ARAP compares structurally (subject, resource, action, context) are kept as the
# original parsed JSON, never re-typed: `1` and `1.0`, absent and null must survive storage.


class EvaluationRecord(msgspec.Struct, kw_only=True):
    """A requestable denial as the PDP emitted it, for the `evaluation_id` binding path
    (AR-30): what was denied, which context members bind, until when it may be submitted."""

    evaluation_id: str
    subject: dict[str, Any]
    resource: dict[str, Any]
    action: dict[str, Any]
    context_members: list[str]
    context_values: dict[str, Any]
    template: str
    requestable: bool = True
    created_at: datetime
    expires_at: datetime


class TaskItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One requested access of a task (a single submission has exactly one item)."""

    resource: dict[str, Any]
    action: dict[str, Any]
    status: str = "pending"
    evaluation_id: str | None = None
    requested_access: dict[str, Any] = {}
    approval_id: str | None = None


class TaskRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An access request task and its workflow state. `version` increases with every change;
    a write with a stale version is refused (optimistic concurrency between replicas)."""

    id: str
    status: str
    requester: str  # the authenticated caller that submitted it
    subject: dict[str, Any]
    context: dict[str, Any] = {}
    context_members: list[str] = []
    items: list[TaskItem]
    bundle: bool = False  # submitted with `items` (the task answers with items)
    template: str
    requested_access: dict[str, Any] = {}
    client: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    workflow: dict[str, Any] = {}  # steps, decisions so far, comments: owned by the workflow engine
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    version: int = 0


class ApprovalRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An approval as the PDP verifies it at re-evaluation (AR-66..AR-72): its exact-match
    scope, who asked, and whether it still stands."""

    id: str
    task_id: str
    item_index: int = 0
    evaluation_id: str | None = None
    subject: dict[str, Any]
    resource: dict[str, Any]
    action: dict[str, Any]
    context_members: list[str] = []
    context_values: dict[str, Any] = {}
    requester: str
    template: str = ""  # the workflow that approved it: the @requestable template it satisfies
    approved_at: datetime
    approved_until: datetime
    state: str | None = None  # the signed `approval.state` handed out (AR-69), stable across reads
    revoked_at: datetime | None = None


class IdempotencyClaim(msgspec.Struct, kw_only=True):
    """An `Idempotency-Key` as one caller used it (AR-45..AR-49)."""

    caller: str
    key: str
    fingerprint: str  # hash of the canonical request body
    expires_at: datetime


class TaskCreation(msgspec.Struct):
    """What `create_task` did: the task now bound to the idempotency key, whether this call
    created it, and whether the stored fingerprint equals the claim's (else duplicate_request)."""

    task: TaskRecord
    created: bool
    same_body: bool


class IdempotentTask(msgspec.Struct):
    """The task an unexpired `Idempotency-Key` of a caller is bound to, and the fingerprint of the
    body that created it: the service looks it up before verifying the binding, so that a retry
    re-presenting a spent `binding_token` gets the original task (ARAP §8.6)."""

    task: TaskRecord
    fingerprint: str


class AuditEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One entry of the tamper-evident audit log: `hash` = sha256 over `prev_hash` and the
    canonical encoding of every other member (see `audit_hash`)."""

    seq: int
    at: datetime
    kind: str
    actor: str
    task_id: str | None = None
    data: dict[str, Any] = {}
    prev_hash: str
    hash: str


class AuditDraft(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An audit event before the store chains it (assigns seq, prev_hash and hash)."""

    at: datetime
    kind: str
    actor: str
    task_id: str | None = None
    data: dict[str, Any] = {}


class CallbackDelivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A completion callback to deliver (AR-77..AR-79), kept until delivered or given up."""

    id: str
    task_id: str
    caller: str  # the requester, whose registered secret authenticates the callback (AR-78)
    event: str
    endpoint: str
    body: dict[str, Any]
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    # How the receiver authenticates the delivery: "hmac" signs it with the caller's
    # callback_secret (AR-78; also a CIBA push to the AS), "bearer" sends the opened
    # `sealed_token` as `Authorization: Bearer` (a CIBA ping, TX-26). A push carries the sealed
    # client_notification_token too, opened into its body for the AS to deliver with.
    auth: Literal["hmac", "bearer"] = "hmac"
    sealed_token: str | None = None
    # A CIBA notice names its auth_req_id, which is stored only hashed and sealed (OP-27): the
    # body carries SEALED_HANDLE wherever it goes, and the delivery opens `sealed_handle` into it.
    sealed_handle: str | None = None


SEALED_HANDLE = "arop:sealed-handle"  # never a handle: handles are base64url, without ":"


# -- continuation handles (the AS-facing sidecar, AROP) ----------------------------------------

HandleBinding = Literal["dtr", "ciba", "txn"]
HandleState = Literal["pending", "issued", "denied", "cancelled", "expired"]


class ContinuationHandle(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A continuation handle (DTR `deferral_code`, CIBA `auth_req_id`, txn
    `transaction_authorization_id`) and what redeeming it needs: the client and key it is bound
    to (OP-24, OP-62), the request and evaluations to re-evaluate at issuance, the ARS task.
    `state` moves from "pending" to one terminal state, which never changes again; `version`
    increases with every change (optimistic concurrency: a redemption happens at most once)."""

    handle_digest: str  # profiles.arop.handles.handle_digest(handle) (OP-27)
    binding: HandleBinding
    authority: str  # the AS (sidecar caller) whose client this is (D-AROP-29)
    client_id: str
    client_auth: str  # the client authentication method used at origination
    key_thumbprint: str | None = None  # "jkt:<...>" (DPoP) or "x5t#S256:<...>" (mTLS)
    dedup_key: str  # OP-20: a repeated request while this handle is pending gets this handle
    principal: dict[str, Any]  # the AuthZEN subject
    task_id: str
    request: dict[str, Any]  # the decide request as received
    evaluations: list[dict[str, Any]]  # the AuthZEN evaluation requests to re-evaluate
    state: HandleState
    interval: int  # seconds; grows by slow_down (OP-28)
    last_poll_at: datetime | None = None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    version: int = 0
    notification: dict[str, Any] | None = None  # CIBA mode, endpoint, client_notification_token
    approval: dict[str, Any] | None = None  # the ARAP approval, once the task is approved
    grant_id: str | None = None  # the IssuedGrant, once issued
    txn_issuer: str | None = None  # txn binding: the challenging RS (`iss`)
    txn: str | None = None
    # The verified client evidence the request was evaluated with (a Client Challenge follow-up,
    # `context.client_evidence`) and until when it holds: re-evaluations use it again, and the
    # grant lives no longer than it (D-CC-5).
    client_evidence: dict[str, Any] | None = None
    client_evidence_until: datetime | None = None
    # The handle sealed under a server key (JWE dir+A256GCM), opened only to answer a
    # deduplicated request while pending (OP-20, D-AROP-18); the digest serves every lookup.
    sealed_handle: str | None = None


class HandleCreation(msgspec.Struct):
    """What `create_handle` did: the handle the client gets, and whether this call created it
    (False: a pending handle with the same dedup key was returned instead)."""

    handle: ContinuationHandle
    created: bool


class IssuedGrant(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a redemption issued, kept so that refresh and token exchange stay within the approval
    (OP-35..OP-37): never past `approved_until`, never broader than what was granted."""

    grant_id: str  # opaque; the AS keeps it with the refresh token family / token id
    handle_digest: str
    authority: str  # the AS that minted it (D-AROP-29)
    client_id: str
    client_auth: str = ""  # the client authentication method at origination (OP-62)
    key_thumbprint: str | None = None
    subject: dict[str, Any]
    authorization_details: list[dict[str, Any]] = []
    scope: list[str] = []
    audience: list[str] = []  # RFC 8707 resources (OP-5)
    approval: dict[str, Any]  # the ARAP approval (id, approved_until, state), re-evaluated at refresh
    approved_until: datetime
    refresh_allowed: bool
    created_at: datetime
    revoked_at: datetime | None = None
    # The grant as the AS was told to mint it (profiles.arop.model.Grant, wire form): its
    # refresh bound is carried over by refresh and exchange, never extended (OP-35).
    grant: dict[str, Any] = {}
    single_use: bool = False


GENESIS_HASH = "0" * 64
_audit_encoder = msgspec.json.Encoder(order="sorted")


def audit_hash(draft: AuditDraft, seq: int, prev_hash: str) -> str:
    """The chained hash of an audit event: every member but `hash` itself, canonically encoded."""
    body = {**msgspec.to_builtins(draft), "seq": seq, "prev_hash": prev_hash}
    return hashlib.sha256(_audit_encoder.encode(body)).hexdigest()


class SignedIn(msgspec.Struct, frozen=True):
    """Who a reviewer-UI session belongs to, and how they proved it."""

    name: str
    entity_type: str
    entity_id: str
    method: Literal["password", "oidc"]


class OidcLogin(msgspec.Struct, frozen=True):
    """An OpenID Connect sign-in under way: what the callback must find again (state, nonce,
    the PKCE verifier) and where to go afterwards."""

    state: str
    nonce: str
    code_verifier: str
    next: str


class ReviewerSession(msgspec.Struct, frozen=True, kw_only=True):
    """A browser's session with the reviewer UI, kept in the store (every replica reads it;
    sign-out ends it everywhere). Keyed by the SHA-256 of the cookie value, never the value.
    Before sign-in it carries only the CSRF token of the sign-in form (and an OIDC login)."""

    session_digest: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    signed_in: SignedIn | None = None
    oidc_login: OidcLogin | None = None
