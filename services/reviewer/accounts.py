"""Local reviewer accounts: `[[reviewers]]` entries with an argon2id `password_hash`.

The embedded default has no identity provider; these accounts let its reviewers sign in to the
web UI. argon2id with the library's RFC 9106 low-memory profile: hashing costs tens of
milliseconds, so a stolen configuration file does not give the passwords away cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from services.config import ReviewerConfig
from services.store.records import SignedIn

_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
# Verified when the name is unknown, so that the answer takes as long as for a known name: the
# time does not tell which reviewer names exist.
_UNKNOWN = _HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


class LocalAccounts:
    def __init__(self, reviewers: Sequence[ReviewerConfig]) -> None:
        self._accounts = {r.name: r for r in reviewers if r.password_hash}

    def __bool__(self) -> bool:
        return bool(self._accounts)

    def sign_in(self, name: str, password: str) -> SignedIn | None:
        """The reviewer whose name and password these are, or None (either one wrong)."""
        account = self._accounts.get(name)
        try:
            _HASHER.verify(account.password_hash if account else _UNKNOWN, password)
        except (VerificationError, InvalidHashError):
            return None
        if account is None:
            return None
        return SignedIn(name=account.name, entity_type=account.entity.type, entity_id=account.entity.id, method="password")
