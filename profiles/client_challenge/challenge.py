"""The challenge and its session (oauth-transports.md §5, TX-49..TX-61).

- `choose_requirement`: whether to challenge at all (TX-59: only clients that declared support;
  only types this AS can verify, TX-56) and for which type.
- `challenge_body`: the Insufficient Client Authorization Response (TX-49..TX-53): HTTP 403,
  `insufficient_client_authorization`, the typed `authorization_requirement`, the
  `challenge_session` at top level (§5.4), `expires_in`.
- `ChallengeSession` and `check_follow_up`: the session is the challenge's nonce (TX-51), stored
  hashed like a continuation handle, bound to the client, its authentication method and its key
  (TX-61), answered once, before it expires (TX-52). An unknown, expired or spent session is
  `invalid_grant` (§5.4); one presented by another client or key is refused the same way.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec

from profiles.arap.model import JSONObject
from profiles.arop.errors import INVALID_GRANT, OAuthFailure
from profiles.client_challenge.evidence import EvidenceVerifier

ERROR = "insufficient_client_authorization"
STATUS = 403  # TX-49: the draft's status, not RFC 6749's default 400 (§5.4)
SESSION_BYTES = 32


class ChallengeSession(msgspec.Struct, frozen=True, kw_only=True):
    """A challenge awaiting its answer: who it was issued to (TX-61) and for what type."""

    session_digest: str
    requirement_type: str
    client_id: str
    auth_method: str
    key_thumbprint: str
    expires_at: datetime
    answered: bool = False


def choose_requirement(challenges: Iterable[str], *, client_supports: bool, verifiers: Mapping[str, EvidenceVerifier]) -> str | None:
    """TX-59, TX-56: the first challenge type the policy named that this AS can verify, for a
    client that declared `insufficient_client_authorization_supported`; None: do not challenge
    (the client gets the ordinary answer)."""
    if not client_supports:
        return None
    return next((kind for kind in challenges if kind in verifiers), None)


def new_session() -> str:
    """TX-51: opaque and unguessable (256 bits, base64url)."""
    return secrets.token_urlsafe(SESSION_BYTES)


def session_digest(session: str) -> str:
    """The stored form of a session, like a handle's (OP-27): the session itself is never kept."""
    return hashlib.sha256(session.encode("utf-8")).hexdigest()


def open_session(
    verifier: EvidenceVerifier, *, client_id: str, auth_method: str, key_thumbprint: str, now: datetime, ttl: timedelta
) -> tuple[str, ChallengeSession, JSONObject]:
    """A new session for `verifier`'s type: (the session value for the client, its record, the
    response body)."""
    session = new_session()
    expires_in = max(1, int(ttl.total_seconds()))
    record = ChallengeSession(
        session_digest=session_digest(session), requirement_type=verifier.type, client_id=client_id,
        auth_method=auth_method, key_thumbprint=key_thumbprint, expires_at=now + timedelta(seconds=expires_in),
    )
    return session, record, challenge_body({**verifier.requirement(), "type": verifier.type}, session, expires_in)


def challenge_body(requirement: JSONObject, session: str, expires_in: int) -> JSONObject:
    """TX-49..TX-52: the error response body (sent with STATUS and Cache-Control: no-store)."""
    if not isinstance(requirement.get("type"), str) or not requirement["type"]:
        raise ValueError("authorization_requirement needs a type (TX-50)")
    return {"error": ERROR, "authorization_requirement": requirement, "challenge_session": session, "expires_in": expires_in}


def check_follow_up(
    session: ChallengeSession | None, *, client_id: str, auth_method: str, key_thumbprint: str, now: datetime
) -> ChallengeSession:
    """TX-52, TX-58, TX-61, §5.4: the session a follow-up answers, if it may: known, unexpired,
    not answered before, and presented by the client, method and key it was issued to. Anything
    else is `invalid_grant`, alike, so a captured session tells a stranger nothing."""
    if session is None or session.answered or now >= session.expires_at:
        raise OAuthFailure(INVALID_GRANT, "challenge_session is unknown, expired or already answered")
    if (session.client_id, session.auth_method, session.key_thumbprint) != (client_id, auth_method, key_thumbprint):
        raise OAuthFailure(INVALID_GRANT, "challenge_session is unknown, expired or already answered")
    return session
