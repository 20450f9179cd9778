"""The Transaction Authorization Challenge binding of the sidecar (spec/arop.md §11.3, OP-7,
OP-8, OP-56..OP-60; oauth-transports.md §4, TX-37..TX-46): the service-side half of
`profiles.arop.txn_challenge`.

- `verify`: the TX-42 checklist over the RS-signed challenge, keys from the recognized RSs
  (`IssuerKeys`), `aud` = this AS (`[oauth] issuer`).
- `admit`: TX-43, OP-60, D-AROP-13 with the store's atomic memory (`claim_token_id`): the
  (`iss`, `txn`) belongs to the first client that presented it; the same client's pending
  handle for it is reused; a (`iss`, `jti`) seen before is a replay.
- `context`: what the PDP (and through the submission the reviewer) learns of the challenge.
- `choose`: the placement (OP-7 "resource", OP-8 "both", D-AROP-23) over the per-pair verdicts.
- `stored_challenge`: the challenge a pending handle was opened for, to build its grant (OP-59).

Every challenge failure is `invalid_request` (D-3, D-AROP-12); nothing in the challenge is used
before its signature verifies (TX-34).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from profiles.arap.signed import unverified_parts
from profiles.arop.dedup import txn_dedup_key
from profiles.arop.model import DecideRequest, OAuthError
from profiles.arop.outcomes import PairDecision, choose, denial_error
from profiles.arop.txn_challenge import (
    KnownTxn,
    VerifiedChallenge,
    admit_challenge,
    jti_memory_until,
    read_challenge,
    verify_challenge,
)
from services.config import OAuthConfig
from services.oauth.issuer_keys import IssuerKeys
from services.store.base import Store, memory_key
from services.store.records import ContinuationHandle

log = logging.getLogger("arop.oauth")

CONTEXT_MEMBER = "transaction_challenge"
"""The evaluation context member carrying the verified challenge (D-AROP-23)."""

_TXN_OWNER = "arop-txn-owner-v1:"
_TXN_JTI = "arop-txn-jti-v1:"


class TxnChallenges:
    def __init__(self, settings: OAuthConfig, store: Store, skew: timedelta) -> None:
        self.keys = IssuerKeys(settings.resource_servers, ca_file=settings.jwks_ca_file)
        self.audience = settings.issuer
        self.placement = settings.txn_placement
        self.store = store
        self.skew = skew
        # How long a `txn` stays bound to its client: the challenge's life, then the longest a
        # handle opened for it and the token minted from it may live (TX-32: `txn` is unique
        # at the RS for the challenge's lifetime and any token issued for it).
        self.txn_tail = timedelta(seconds=settings.handle_ttl + settings.access_token_ttl)

    async def verify(self, token: str, now: datetime) -> VerifiedChallenge:
        """OP-57, TX-42: verified, or OAuthFailure(invalid_request). Without `[oauth] issuer`
        nothing can name this AS, and there are no resource servers (services/config.py)."""
        await self.keys.load(token)
        return verify_challenge(token, resolve_key=self.keys.resolve, audience=self.audience or "urn:arop:no-issuer", now=now, skew=self.skew)

    async def admit(self, challenge: VerifiedChallenge, presenter: str, now: datetime) -> ContinuationHandle | None:
        """TX-43, OP-60, D-AROP-13: the same presenter's (`dedup.presenter`) pending handle for
        this (`iss`, `txn`) to answer with again, None to open a new access request, or
        OAuthFailure (invalid_request) for another presenter's `txn` or a replayed `jti`. Both
        memories are atomic store claims, so of two presenters racing for one `txn` exactly one
        owns it."""
        owner_until = max(jti_memory_until(challenge, self.skew), now + self.txn_tail)
        owns = await self.store.claim_token_id(memory_key(_TXN_OWNER, challenge.iss, challenge.txn), presenter, owner_until, now)
        handles = await self.store.handles_for_dedup_key(txn_dedup_key(presenter, challenge.iss, challenge.txn)) if owns else []
        current = next((h for h in handles if h.state == "pending" and h.expires_at > now), None)
        fresh = await self.store.claim_token_id(memory_key(_TXN_JTI, challenge.iss, challenge.jti), None, jti_memory_until(challenge, self.skew), now)
        known = KnownTxn(presenter=presenter, pending=current is not None) if owns else KnownTxn(presenter="\0another presenter", pending=False)
        if admit_challenge(challenge, presenter=presenter, known=known, jti_replayed=not fresh) == "reuse":
            return current
        return None

    @staticmethod
    def context(challenge: VerifiedChallenge) -> dict[str, Any]:
        """D-AROP-23, TX-42 ("`act` MUST factor into the decision"), D-10: the challenging RS,
        its transaction and its integrity-protected `reason` (what the reviewer is shown), and
        the attempting actor when the RS named one. Stable for the handle's life: the stored
        evaluations are re-evaluated as they are (OP-45)."""
        member: dict[str, Any] = {"iss": challenge.iss, "txn": challenge.txn, "reason": challenge.reason}
        if challenge.act is not None:
            member["act"] = challenge.act
        return {CONTEXT_MEMBER: member}

    def choose(self, request: DecideRequest, verdicts: Sequence[PairDecision]) -> Literal["defer"] | OAuthError:
        """OP-7, OP-8, D-AROP-10, D-AROP-23. "both": an AS-side non-requestable denial refuses
        the challenge at once (D-3: `invalid_authorization_details`), before any access
        request. "resource": the AS's verdict is not a decision of its own. Either way every
        pair must then be requestable: the one access request must cover the whole challenged
        operation, and the ARS opens only what the PDP denies requestably now (AR-31, AR-43);
        a pair it would refuse (already allowed, or denied outright) leaves the challenge
        unobtainable here (D-AROP-21). The DPoP rule of D-AROP-17 applies as for DTR."""
        considered = verdicts if self.placement == "both" else [msgspec.structs.replace(d, verdict="requestable") for d in verdicts]
        choice = choose(request, considered, retry_with=[])
        if choice != "defer":
            assert isinstance(choice, OAuthError)  # txn is never `token`: no remediation, never allow
            return choice
        unroutable = next((d for d in verdicts if d.verdict != "requestable"), None)
        if unroutable is not None:
            log.info("a transaction challenge is not requestable under the AS's policy", extra={"placement": self.placement, "verdict": unroutable.verdict})
            return denial_error(unroutable.pair.origin)
        return "defer"


def stored_challenge(record: ContinuationHandle) -> VerifiedChallenge:
    """OP-59: the challenge a txn handle was opened for. It passed TX-42 when the handle was
    created and is read back from our own store; its `exp` no longer matters (the approval and
    the handle bound the grant)."""
    challenge = read_challenge(unverified_parts(record.request["transaction_challenge"])[1])
    assert challenge.iss == record.txn_issuer and challenge.txn == record.txn
    return challenge
