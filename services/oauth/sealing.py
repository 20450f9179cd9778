"""Sealed continuation handles (D-AROP-18, OP-20, OP-27).

The store keys a handle by its digest and never holds it in the clear. A deduplicated request
must still get the very handle back (§11.1 step 5), so the record keeps the handle sealed under a
server key (JWE `dir` + `A256GCM`), opened only to answer such a request while the handle is
pending. The key is made once and kept in the store, shared by every worker and replica.
joserfc is imported on first use: a worker that never defers loads no JOSE (docs/performance.md).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from services.store import Store

if TYPE_CHECKING:
    from joserfc.jwk import OctKey

SEAL_SECRET = "oauth-handle-seal"
_HEADER = {"alg": "dir", "enc": "A256GCM"}


class HandleSeal:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._key: OctKey | None = None

    async def _current(self) -> OctKey:
        from joserfc.jwk import OctKey

        if self._key is None:
            secret = await self.store.get_or_create_secret(SEAL_SECRET, secrets.token_bytes(32))
            self._key = OctKey.import_key(secret)
        return self._key

    async def seal(self, handle: str) -> str:
        from joserfc import jwe

        return jwe.encrypt_compact(_HEADER, handle.encode("ascii"), await self._current())

    async def open(self, sealed: str) -> str:
        from joserfc import jwe

        plaintext = jwe.decrypt_compact(sealed, await self._current()).plaintext
        assert plaintext is not None
        return plaintext.decode("ascii")
