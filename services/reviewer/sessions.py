"""Reviewer UI sessions: an opaque cookie naming a row in the store, and the CSRF token of
every form the session sees.

The cookie is `__Host-` prefixed (Secure, Path=/, no Domain: no sibling host can plant or read
it), HttpOnly (no script reads it) and SameSite=Lax (a cross-site POST carries no session;
Lax, not Strict, so that the identity provider's redirect back to the callback still does).
The store keeps only the SHA-256 of the cookie value. Signing in always starts a new session
(no fixation); a session lasts `session_ttl` from sign-in, then the reviewer signs in again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import msgspec

from services.config import ReviewerUIConfig
from services.store import Store
from services.store.records import OidcLogin, ReviewerSession, SignedIn

# A session that has not signed in yet only carries the sign-in form's CSRF token (and an
# OpenID Connect login under way): it lives long enough to fill in a form or pass the provider.
PRE_SIGN_IN_TTL = timedelta(minutes=15)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ReviewerSessions:
    def __init__(self, store: Store, config: ReviewerUIConfig) -> None:
        self.store = store
        self.ttl = timedelta(seconds=config.session_ttl)
        self.secure = config.cookie_secure
        self.cookie_name = "__Host-arop_session" if config.cookie_secure else "arop_session"

    async def load(self, cookie: str | None, now: datetime) -> ReviewerSession | None:
        """The live session the cookie names, or None (no cookie, unknown, or expired)."""
        if not cookie or len(cookie) > 100:
            return None
        session = await self.store.get_reviewer_session(_digest(cookie))
        return session if session is not None and now < session.expires_at else None

    async def start(self, now: datetime) -> tuple[str, ReviewerSession]:
        """A new session before sign-in: the cookie value, and the session."""
        return await self._new(now, PRE_SIGN_IN_TTL, signed_in=None)

    async def remember_login(self, session: ReviewerSession, login: OidcLogin) -> None:
        await self.store.save_reviewer_session(msgspec.structs.replace(session, oidc_login=login))

    async def sign_in(self, previous: ReviewerSession, who: SignedIn, now: datetime) -> tuple[str, ReviewerSession] | None:
        """End the pre-sign-in session and start a signed-in one under a new cookie value and
        CSRF token. None when the previous session was already used (a replayed callback, or a
        second submission racing the first): exactly one sign-in consumes it."""
        if not await self.store.delete_reviewer_session(previous.session_digest):
            return None
        return await self._new(now, self.ttl, signed_in=who)

    async def end(self, session: ReviewerSession) -> None:
        await self.store.delete_reviewer_session(session.session_digest)

    async def _new(self, now: datetime, ttl: timedelta, signed_in: SignedIn | None) -> tuple[str, ReviewerSession]:
        value = secrets.token_urlsafe(32)
        session = ReviewerSession(
            session_digest=_digest(value), csrf_token=secrets.token_urlsafe(32), created_at=now, expires_at=now + ttl, signed_in=signed_in
        )
        await self.store.save_reviewer_session(session)
        return value, session


def same_secret(expected: str, given: str | None) -> bool:
    """`given` is the secret `expected`, compared in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())  # type: ignore[union-attr]


def csrf_valid(session: ReviewerSession | None, submitted: str | None) -> bool:
    """The form (or htmx header) carries this session's token."""
    return session is not None and same_secret(session.csrf_token, submitted)
