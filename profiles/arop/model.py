"""Wire types of the AS-facing sidecar API (DESIGN.md §3 "AS-facing sidecar API", spec/arop.md).

The AS keeps doing OAuth (client authentication, DPoP proof checks, minting); it posts what it saw
and the sidecar answers what to do. Requests refuse unknown members (D-AROP-1): a misspelt
security member such as a sender key must fail loudly instead of silently unbinding a handle.
Values that are JSON on the OAuth wire (`authorization_details`, `act`) stay plain parsed JSON so
rules compare them structurally (`profiles.arap.compare`). Instants are RFC 3339 strings
(`profiles.arap.model.parse_instant` / `format_instant`).

Responses are a tagged union on `outcome`. `OAuthError`, `Remediation` and `ClientChallenge` are relayed as: HTTP
status `status`, JSON body = every other member except `outcome`; `Pending.response` carries its
status and body explicitly because they differ per transport (TX-9, TX-21, TX-38).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from profiles.arap.model import JSONObject
from profiles.authzen.model import Subject

Binding = Literal["token", "dtr", "ciba", "txn"]
"""How the client engaged (OP-9): `token` a token request without the DTR opt-in, `dtr` one with
`completion_mode` containing `deferred`, `ciba` the backchannel endpoint, `txn` the transaction
authorization endpoint."""

DeliveryMode = Literal["poll", "ping", "push"]
RetryWith = Literal["completion_mode=deferred", "ciba"]

# RFC 6749 §5.2 / TX-4: error_description is NQSCHAR (printable ASCII without `"` and `\`).
_NQSCHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


class _Wire(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class _Request(_Wire, forbid_unknown_fields=True):
    pass


# -- request members -----------------------------------------------------------------------


class Client(_Request):
    """The client as the AS authenticated it (OP-62): id, method, and whether it is public; and
    whether its registered metadata declares `insufficient_client_authorization_supported`
    (TX-59: only such a client is ever challenged)."""

    id: str
    auth_method: str
    public: bool
    insufficient_client_authorization_supported: bool = False


class Sender(_Request):
    """The key the AS verified possession of (OP-61): a DPoP `jkt` or an mTLS `x5t#S256`, or
    neither (a confidential client without sender constraint). At most one: it is the key the
    handle and the token are bound to (D-AROP-2)."""

    dpop_jkt: str | None = None
    x5t_s256: str | None = None

    def __post_init__(self) -> None:
        if self.dpop_jkt is not None and self.x5t_s256 is not None:
            raise ValueError("sender: give the one key the token is bound to (dpop_jkt or x5t_s256)")


class Ciba(_Request):
    """The backchannel authentication parameters the client sent (TX-20..TX-22) and the client's
    registered delivery mode and notification endpoint. Validated by `ciba.check_backchannel`;
    `requested_expiry` is kept as sent (a form value is a string)."""

    delivery_mode: DeliveryMode
    login_hint: str | None = None
    login_hint_token: str | None = None
    id_token_hint: str | None = None
    binding_message: str | None = None
    requested_expiry: int | str | None = None
    client_notification_token: str | None = None
    notification_endpoint: str | None = None


class EvidenceInput(_Request):
    """What a client supplied with its answer to a challenge (TX-56, TX-58), as the AS relays
    it: the client attestation and its proof of possession (the `OAuth-Client-Attestation` and
    `OAuth-Client-Attestation-PoP` headers), the `mandate` token request parameter, and the
    parameters of further requirement types by name (profiles.client_challenge)."""

    client_attestation: str | None = None
    client_attestation_pop: str | None = None
    mandate: str | None = None
    parameters: dict[str, str] = {}


class DecideRequest(_Request):
    """A token, backchannel or transaction authorization request, as the AS saw it.

    `subject` is the principal per the OP §10 table, resolved by the AS; `actor` the RFC 8693
    `act` object. Binding-specific members are required exactly where their binding is (D-AROP-3):
    `completion_mode` decides `token` vs `dtr` (OP-17), `ciba` goes with `ciba`, and `txn`
    carries only the challenge: its operation comes from the signed challenge, never from
    unprotected request text (TX-42).

    A follow-up to a client challenge (TX-58) adds the `challenge_session` and the `evidence` the
    client supplied with it (the attestation headers, the `mandate` parameter, ...): only at the
    token endpoint, where the challenge is defined (TX-62, D-CC-4).
    """

    binding: Binding
    grant_type: str
    client: Client
    subject: Subject
    sender: Sender
    resource: list[str] = []
    actor: JSONObject | None = None
    authorization_details: list[JSONObject] | None = None
    scope: str | None = None
    completion_mode: str | None = None
    ciba: Ciba | None = None
    transaction_challenge: str | None = None
    challenge_session: str | None = None
    evidence: EvidenceInput | None = None

    def __post_init__(self) -> None:
        # dtr builds on the types of this module, so it is imported at use.
        from profiles.arop.dtr import opted_in

        if self.binding in ("token", "dtr") and opted_in(self.completion_mode) != (self.binding == "dtr"):
            raise ValueError("binding: `dtr` exactly when completion_mode contains `deferred`")
        if self.binding not in ("token", "dtr") and self.completion_mode is not None:
            raise ValueError("completion_mode belongs to token endpoint requests")
        if (self.binding == "ciba") != (self.ciba is not None):
            raise ValueError("ciba: required for the ciba binding and only there")
        if (self.binding == "txn") != (self.transaction_challenge is not None):
            raise ValueError("transaction_challenge: required for the txn binding and only there")
        if self.binding == "txn" and (self.authorization_details is not None or self.scope is not None or self.resource):
            raise ValueError("txn: the operation comes from the challenge; send no authorization_details, scope or resource")
        if self.binding not in ("token", "dtr") and (self.challenge_session is not None or self.evidence is not None):
            raise ValueError("challenge_session and evidence belong to token endpoint requests")


class RedeemRequest(_Request):
    """A poll or redemption of a continuation handle (TX-12, TX-23, TX-40), with the client
    and key the AS verified (OP-24, OP-62)."""

    binding: Binding
    handle: str
    client_id: str
    auth_method: str
    sender: Sender


class CancelRequest(_Request):
    """An RFC 7009 revocation the AS routed to the sidecar (OP-65, TX-19)."""

    token: str
    client_id: str
    auth_method: str
    sender: Sender
    token_type_hint: str | None = None


class _GrantCheck(_Request):
    """A later use of an issued grant: what the client now asks for (absent = as granted)."""

    grant_id: str
    client_id: str
    auth_method: str
    sender: Sender
    authorization_details: list[JSONObject] | None = None
    scope: str | None = None
    resource: list[str] | None = None


class RefreshCheckRequest(_GrantCheck):
    """A refresh token request on a recorded grant (OP-35, OP-36)."""


class ExchangeCheckRequest(_GrantCheck):
    """A token exchange whose subject token came from a recorded grant (OP-35, TX-76)."""


# -- responses -----------------------------------------------------------------------------


class Confirmation(_Wire):
    """RFC 7800 `cnf` of the token to mint (OP-63): the recorded key, never a new one."""

    jkt: str | None = None
    x5t_s256: str | None = msgspec.field(default=None, name="x5t#S256")

    def __post_init__(self) -> None:
        if (self.jkt is None) == (self.x5t_s256 is None):
            raise ValueError("cnf names exactly one key: jkt or x5t#S256")


class Grant(_Wire):
    """What the AS mints. `expires_at` ≤ `approved_until` (OP-34); `expires_in` is the same
    bound in seconds from the decision, for the token response. `grant_id` names the recorded
    grant for refresh and exchange checks (OP-37); `cnf` is absent only for a client that
    presented no key (D-AROP-2)."""

    subject: Subject
    audience: list[str]
    expires_at: str
    expires_in: int
    refresh_allowed: bool
    authorization_details: list[JSONObject] | None = None
    scope: str | None = None
    txn: str | None = None
    refresh_expires_at: str | None = None
    cnf: Confirmation | None = None
    actor: JSONObject | None = None
    grant_id: str | None = None


class Relay(_Wire):
    """An HTTP answer the AS relays unchanged: status and JSON body."""

    status: int
    body: JSONObject


class ApprovalObtainable(_Wire):
    """The remediation extension member (D-AROP-4): the transports the client may retry with."""

    retry_with: list[RetryWith]


class _Outcome(_Wire, tag_field="outcome"):
    pass


class Allow(_Outcome, tag="allow"):
    """Mint this grant (OP-3: the token is the decision)."""

    grant: Grant


class OAuthError(_Outcome, tag="error"):
    """An RFC 6749 §5.2 error (TX-4). `interval` is the one extension member: DTR pending polls
    repeat it so clients pick up a raised interval (TX-15)."""

    status: int
    error: str
    error_description: str | None = None
    interval: int | None = None

    def __post_init__(self) -> None:
        if self.error_description is not None and not _NQSCHAR.fullmatch(self.error_description):
            raise ValueError("error_description is printable ASCII without '\"' or '\\' (RFC 6749 §5.2)")


class Remediation(_Outcome, tag="remediation"):
    """DESIGN.md §5 (overrides D-1): the synchronous error of a requestable denial for a client
    that did not opt in, plus `approval_obtainable` naming the transports to retry with."""

    status: int
    error: str
    approval_obtainable: ApprovalObtainable
    error_description: str | None = None


class ClientChallenge(_Outcome, tag="challenge"):
    """The Insufficient Client Authorization Response (TX-49..TX-52): the AS relays it as HTTP
    `status` (403) with every other member as the JSON body, `Cache-Control: no-store`."""

    status: int
    error: str
    authorization_requirement: JSONObject
    challenge_session: str
    expires_in: int


class Pending(_Outcome, tag="pending"):
    """A new or deduplicated continuation handle (OP-16) and the exact answer to relay."""

    handle: str
    expires_in: int
    interval: int
    response: Relay


DecideResponse = Allow | OAuthError | Pending | Remediation | ClientChallenge
RedeemResponse = Allow | OAuthError
GrantCheckResponse = Allow | OAuthError


def relayed_body(response: OAuthError | Remediation | ClientChallenge) -> JSONObject:
    """The JSON body the AS relays for an error outcome: every member but `outcome`/`status`."""
    body: JSONObject = msgspec.to_builtins(response)
    del body["outcome"], body["status"]
    return body
