"""Signing keys: ES256, generated on first start, kept in the store, published as a JWKS.

Retired keys stay published (and so keep verifying) until their `retires_at` passes
(`arop keys rotate`). Private key material is never logged.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from typing import TYPE_CHECKING

import msgspec

from profiles.arap.signed import peek
from services.store import Store
from services.store.records import SigningKey

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

    from profiles.arap.signed import KeyResolver

ALG = "ES256"
CACHE_SECONDS = 60


def _ec_key() -> type[ECKey]:
    # joserfc pulls in cryptography (~15 MiB per worker); load it when a key is first used.
    from joserfc.jwk import ECKey

    return ECKey


def generate_signing_key(now: datetime) -> SigningKey:
    ECKey = _ec_key()
    kid = secrets.token_urlsafe(12)
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"}, private=True)
    return SigningKey(kid=kid, alg=ALG, private_jwk=msgspec.json.encode(key.as_dict(private=True)).decode(), created_at=now)


class KeyRing:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: list[SigningKey] = []
        self._loaded_at: datetime | None = None
        self._public: dict[str, ECKey] = {}
        self._current: tuple[str, ECKey] | None = None

    async def _load(self) -> list[SigningKey]:
        now = datetime.now(timezone.utc)
        if self._loaded_at and now - self._loaded_at < timedelta(seconds=CACHE_SECONDS) and self._keys:
            return self._keys
        keys = await self.store.signing_keys(now)
        if not keys:
            # Concurrent first starts may each add one; all then agree on the newest.
            await self.store.add_signing_key(generate_signing_key(now))
            keys = await self.store.signing_keys(now)
        self._keys, self._loaded_at = keys, now
        return keys

    async def current(self) -> ECKey:
        """The newest key: what every new signature uses. Imported once per key, not per
        signature: requestable denials sign on the decision path."""
        newest = (await self._load())[0]
        if self._current is None or self._current[0] != newest.kid:
            self._current = (newest.kid, _ec_key().import_key(msgspec.json.decode(newest.private_jwk)))
        return self._current[1]

    async def resolver(self, token: object, issuers: frozenset[str]) -> KeyResolver:
        """A `(iss, kid) -> key` resolver for verifying `token` (profiles.arap.signed): our own
        keys, trusted for `issuers` only. A `kid` we do not hold refreshes the set once before
        the resolver answers None (AR-5): another instance may have rotated meanwhile."""
        _, kid = peek(token)
        keys = await self._load()
        if kid is not None and all(stored.kid != kid for stored in keys):
            self._loaded_at = None
            keys = await self._load()
        held = {stored.kid for stored in keys}

        def resolve(iss: str | None, kid: str | None) -> ECKey | None:
            if iss not in issuers or kid not in held:
                return None
            return self._public_key(kid)

        return resolve

    def _public_key(self, kid: str) -> ECKey:
        key = self._public.get(kid)
        if key is None:
            stored = next(s for s in self._keys if s.kid == kid)
            public = _ec_key().import_key(msgspec.json.decode(stored.private_jwk)).as_dict(private=False)
            key = self._public[kid] = _ec_key().import_key(public)
        return key

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Public keys of every key that still verifies."""
        keys = []
        for stored in await self._load():
            public = _ec_key().import_key(msgspec.json.decode(stored.private_jwk)).as_dict(private=False)
            keys.append({**public, "kid": stored.kid, "alg": stored.alg, "use": "sig"})
        return {"keys": keys}


async def rotate(store: Store, *, grace: timedelta) -> SigningKey:
    """Add a new key and schedule the older ones to stop verifying after `grace`."""
    now = datetime.now(timezone.utc)
    key = generate_signing_key(now)
    await store.add_signing_key(key)
    await store.retire_signing_keys(key.kid, now + grace)
    return key
