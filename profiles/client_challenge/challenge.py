"""The challenge and its session (oauth-transports.md §5, TX-49..TX-61; DESIGN.md §3).

- `requirement_for`: whether to challenge at all and for which type: a client that declared
  support (TX-59) and proves a key (TX-60, TX-61, D-CC-4), a type this AS can verify (TX-56)
  that the policy names for every pair evidence could lift, and no plain denial that no
  evidence can lift.
- `open_session` / `challenge_response`: the Insufficient Client Authorization Response
  (TX-49..TX-53): HTTP 403, `insufficient_client_authorization`, the typed
  `authorization_requirement`, the `challenge_session` at top level (§5.4), `expires_in`.
- `resolvable_without_evidence`: whether a client that could not satisfy the challenge goes on to approval
  instead of `unauthorized_client` (TX-57).
- `follow_up` and `check_follow_up`: the session is the challenge's nonce (TX-51), stored
  hashed like a continuation handle, bound to the AS, the client, its authentication method,
  its key (TX-61) and the request it challenged (TX-58), answered once, before it expires
  (TX-52). An unknown, expired or spent session is `invalid_grant` (§5.4); one presented by
  another client or key is refused the same way, so a captured session tells a stranger nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from profiles.arap.model import JSONObject
from profiles.arop.errors import INVALID_GRANT, INVALID_REQUEST, OAuthFailure
from profiles.arop.model import ClientChallenge
from profiles.arop.outcomes import Verdict
from profiles.client_challenge.evidence import EvidenceInput, EvidenceVerifier

ERROR = "insufficient_client_authorization"
STATUS = 403  # TX-49: the draft's status, not RFC 6749's default 400 (§5.4)
SESSION_BYTES = 32


class Presenter(msgspec.Struct, frozen=True):
    """Who presents a token request (TX-61): the AS relaying it (D-AROP-29), the client, its
    authentication method and the key it proved (`dedup.thumbprint`)."""

    authority: str
    client_id: str
    auth_method: str
    key_thumbprint: str


class ChallengeSession(msgspec.Struct, frozen=True, kw_only=True):
    """A challenge awaiting its answer: who it was issued to (TX-61), for which request (TX-58)
    and which evidence type."""

    session_digest: str
    requirement_type: str
    issued_to: Presenter
    request_digest: str
    expires_at: datetime


def requirement_for(
    pairs: Sequence[tuple[Verdict, Sequence[str]]],
    *,
    client_supports: bool,
    key_thumbprint: str,
    presented: str | None,
    verifiers: Mapping[str, EvidenceVerifier],
) -> str | None:
    """The evidence type to challenge for, None not to challenge (the client gets the ordinary
    answer). `pairs` are the request's per-pair verdicts with the `@challenge` types of the
    permits that would match (DESIGN §3). Challenged are only:
    - a client that declared `insufficient_client_authorization_supported` (TX-59) and proves
      a key the session and the token are bound to (TX-60, TX-61, D-CC-4);
    - a request whose every denied pair either names a challenge type or is requestable, with
      at least one naming one: a plain denial that no evidence lifts ends the request at once;
    - for the first type, in policy order, that every challengeable pair names, this AS can
      verify (TX-56), and the client has not presented on this very request: presented
      evidence that still does not allow leaves the denial what it is, requestable or not."""
    if not client_supports or not key_thumbprint:
        return None
    denied = [(verdict, [kind for kind in kinds if kind != presented and kind in verifiers]) for verdict, kinds in pairs if verdict != "allow"]
    challengeable = [kinds for _, kinds in denied if kinds]
    if not challengeable or any(verdict == "deny" and not kinds for verdict, kinds in denied):
        return None
    first, *others = challengeable
    return next((kind for kind in first if all(kind in kinds for kinds in others)), None)


def resolvable_without_evidence(verdicts: Sequence[Verdict]) -> bool:
    """TX-57, DESIGN §3: may a request whose client failed to supply the evidence go on? Yes
    when no pair is denied outright: what is not allowed is requestable, and approval is another
    way to resolve it (deferred with the opt-in, the remediation without it). Otherwise the
    failed answer is `unauthorized_client`."""
    return "deny" not in verdicts


def new_session() -> str:
    """TX-51: opaque and unguessable (256 bits, base64url)."""
    return secrets.token_urlsafe(SESSION_BYTES)


def session_digest(session: str) -> str:
    """The stored form of a session, like a handle's (OP-27): the session itself is never kept."""
    return hashlib.sha256(session.encode("utf-8")).hexdigest()


def open_session(
    verifier: EvidenceVerifier, issued_to: Presenter, *, request_digest: str, now: datetime, ttl: timedelta
) -> tuple[ChallengeSession, ClientChallenge]:
    """A new session for `verifier`'s type: its record and the response carrying its value."""
    session = new_session()
    expires_in = max(1, int(ttl.total_seconds()))
    record = ChallengeSession(
        session_digest=session_digest(session), requirement_type=verifier.type, issued_to=issued_to,
        request_digest=request_digest, expires_at=now + timedelta(seconds=expires_in),
    )
    members = verifier.requirement()
    if "type" in members:
        raise ValueError(f"the {verifier.type} verifier's requirement names its own type")
    return record, challenge_response({"type": verifier.type, **members}, session, expires_in)


def challenge_response(requirement: JSONObject, session: str, expires_in: int) -> ClientChallenge:
    """TX-49..TX-52: the error response (the AS relays it with `Cache-Control: no-store`)."""
    if not isinstance(requirement.get("type"), str) or not requirement["type"]:
        raise ValueError("authorization_requirement needs a type (TX-50)")
    return ClientChallenge(
        status=STATUS, error=ERROR, authorization_requirement=requirement, challenge_session=session, expires_in=expires_in
    )


def follow_up(challenge_session: str | None, evidence: EvidenceInput | None) -> tuple[str, EvidenceInput] | None:
    """TX-58: the session a request answers and what it supplied with it; None for a request
    that answers no challenge. Evidence belongs to a session (it answers that challenge and no
    other): without one it is invalid_request. A session without evidence is kept, for its
    verifier to refuse (TX-57)."""
    if challenge_session is None:
        if evidence is not None:
            raise OAuthFailure(INVALID_REQUEST, "client evidence answers a challenge: send its challenge_session")
        return None
    return challenge_session, evidence or EvidenceInput()


def check_follow_up(session: ChallengeSession | None, presenter: Presenter, *, request_digest: str, now: datetime) -> ChallengeSession:
    """TX-52, TX-58, TX-61, §5.4: the session a follow-up answers, if it may: known (None once
    answered: the store forgets it), unexpired, and presented by the AS, client, method and key
    it was issued to. Anything else is `invalid_grant`, alike. The
    follow-up must repeat the request that was challenged (TX-58), else invalid_request."""
    if session is None or now >= session.expires_at or session.issued_to != presenter:
        raise OAuthFailure(INVALID_GRANT, "challenge_session is unknown, expired or already answered")
    if session.request_digest != request_digest:
        raise OAuthFailure(INVALID_REQUEST, "a follow-up repeats the request that was challenged")
    return session
