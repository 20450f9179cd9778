"""The Client Challenge of the sidecar (oauth-transports.md §5, TX-49..TX-62; DESIGN.md §3): the
service-side half of `profiles.client_challenge`.

- `ClientChallenges.verifiers`: one verifier per configured evidence type, over the keys of the
  issuers trusted for it (`IssuerKeys`): the built-in `client_attestation` and `mandate`, or
  the one a configured `factory` builds (the extension point, TX-56).
- `answer`: a follow-up's session, taken from the store once and checked (TX-52, TX-58,
  TX-61), then its evidence verified for the session's type (TX-57) and its `jti` remembered so
  that it is accepted once.
- `requirement` / `challenge`: whether to challenge (profiles.client_challenge.challenge.
  requirement_for) and a new stored session with the 403 answer (TX-49..TX-52).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from profiles.arap.signed import KeyResolver
from profiles.arop.dedup import request_dedup_key, thumbprint
from profiles.arop.errors import INVALID_GRANT, OAuthFailure
from profiles.arop.model import ClientChallenge, DecideRequest, EvidenceInput
from profiles.arop.outcomes import Verdict
from profiles.arop.requested import Requested
from profiles.client_challenge.attestation import ClientAttestationVerifier
from profiles.client_challenge.challenge import (
    Presenter,
    check_follow_up,
    follow_up,
    open_session,
    requirement_for,
    session_digest,
)
from profiles.client_challenge.evidence import (
    EvidenceContext,
    EvidenceVerifier,
    VerifiedEvidence,
    refused,
    registry,
)
from profiles.client_challenge.mandate import MandateVerifier
from services.config import ConfigError, EvidenceVerifierConfig, OAuthConfig
from services.oauth.issuer_keys import IssuerKeys
from services.store.base import Store, memory_key

log = logging.getLogger("arop.oauth")

_EVIDENCE_JTI = "arop-evidence-jti-v1:"


def _attestation(resolve_key: KeyResolver, *, max_pop_age: int = 300) -> EvidenceVerifier:
    return ClientAttestationVerifier(resolve_key, max_pop_age=timedelta(seconds=max_pop_age))


BUILT_IN: dict[str, Callable[..., EvidenceVerifier]] = {"client_attestation": _attestation, "mandate": MandateVerifier}


def build_verifier(entry: EvidenceVerifierConfig, resolve_key: KeyResolver) -> EvidenceVerifier:
    """The verifier of one configured type: built in, or `factory(resolve_key, **options)`.
    Anything that cannot be built is a configuration error at start-up, not at the first
    challenge."""
    try:
        if entry.factory:
            module, _, name = entry.factory.partition(":")
            factory: Callable[..., EvidenceVerifier] = importlib.import_module(module)
            for part in name.split("."):
                factory = getattr(factory, part)
        else:
            factory = BUILT_IN[entry.type]
        verifier = factory(resolve_key, **entry.options)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"oauth.client_challenge: the {entry.type} verifier cannot be built: {exc}") from None
    if getattr(verifier, "type", None) != entry.type or not callable(getattr(verifier, "verify", None)):
        raise ConfigError(f"oauth.client_challenge: {entry.factory or entry.type} does not verify {entry.type} evidence")
    return verifier


class ClientChallenges:
    def __init__(self, settings: OAuthConfig, store: Store, skew: timedelta) -> None:
        section = settings.client_challenge
        self.audience = settings.issuer
        self.ttl = timedelta(seconds=section.session_ttl)
        self.store = store
        self.skew = skew
        self._keys: dict[str, IssuerKeys] = {}
        verifiers: dict[str, EvidenceVerifier] = {}
        for entry in section.verifiers:
            keys = IssuerKeys(entry.issuers, ca_file=settings.jwks_ca_file)
            verifiers[entry.type] = build_verifier(entry, keys.resolve)
            self._keys[entry.type] = keys
        self.verifiers = registry(verifiers)

    def requirement(self, request: DecideRequest, pairs: Sequence[tuple[Verdict, Sequence[str]]], presented: VerifiedEvidence | None) -> str | None:
        """The evidence type to challenge this request for, or None (TX-59, TX-56, DESIGN §3)."""
        if not self.verifiers or request.binding not in ("token", "dtr"):  # TX-62: the token endpoint's error
            return None
        return requirement_for(
            pairs,
            client_supports=request.client.insufficient_client_authorization_supported,
            key_thumbprint=thumbprint(request.sender),
            presented=presented.type if presented else None,
            verifiers=self.verifiers,
        )

    async def challenge(self, kind: str, request: DecideRequest, requested: Requested, authority: str, now: datetime) -> ClientChallenge:
        """TX-49..TX-52, TX-61: a new session, stored bound to the AS, client, method, key and
        request (its §6 dedup key), and the answer carrying it."""
        request_digest = request_dedup_key(request, requested, authority=authority)
        record, answer = open_session(self.verifiers[kind], _presenter(request, authority), request_digest=request_digest, now=now, ttl=self.ttl)
        await self.store.create_challenge_session(record)
        return answer

    async def answer(self, request: DecideRequest, requested: Requested, authority: str, now: datetime) -> VerifiedEvidence | None:
        """TX-58: the verified evidence of a follow-up, None for a request that answers no
        challenge; OAuthFailure: invalid_grant for a session that is unknown, expired, spent or
        another's (§5.4, TX-61), invalid_request for another request or evidence without a
        session, unauthorized_client for evidence that fails (TX-57). A session its own client
        presents with the challenged request is spent whatever the outcome: a failed answer
        cannot be retried with other evidence."""
        answered = follow_up(request.challenge_session, request.evidence)
        if answered is None:
            return None
        value, supplied = answered
        presenter = _presenter(request, authority)
        digest = session_digest(value)
        request_digest = request_dedup_key(request, requested, authority=authority)
        session = check_follow_up(await self.store.get_challenge_session(digest), presenter, request_digest=request_digest, now=now)
        # Only its own client spends a session: a stranger holding a captured one cannot burn it.
        if not await self.store.take_challenge_session(digest):
            raise OAuthFailure(INVALID_GRANT, "challenge_session is unknown, expired or already answered")
        verifier = self.verifiers.get(session.requirement_type)
        if verifier is None:  # the type was configured away since the challenge
            raise refused(f"{session.requirement_type} evidence is no longer accepted")
        await self._keys[session.requirement_type].load(*_tokens(supplied))
        context = EvidenceContext(
            client_id=request.client.id, audience=self.audience, challenge=value, key_thumbprint=presenter.key_thumbprint, now=now, skew=self.skew,
        )
        evidence = _verified(verifier, supplied, context)
        if evidence.jti is not None:
            memory = memory_key(_EVIDENCE_JTI, evidence.type, evidence.issuer, evidence.jti)
            if not await self.store.claim_token_id(memory, None, evidence.remember_until, now):
                raise refused(f"this {evidence.type} evidence was presented before")
        return evidence


def _presenter(request: DecideRequest, authority: str) -> Presenter:
    return Presenter(authority, request.client.id, request.client.auth_method, thumbprint(request.sender))


def _verified(verifier: EvidenceVerifier, supplied: EvidenceInput, context: EvidenceContext) -> VerifiedEvidence:
    """TX-57: an extension verifier that fails in any other way than refusing fails closed."""
    try:
        return verifier.verify(supplied, context)
    except OAuthFailure:
        raise
    except Exception:
        log.exception("an evidence verifier failed", extra={"type": verifier.type})
        raise refused(f"{verifier.type} evidence could not be verified") from None


def _tokens(supplied: EvidenceInput) -> list[Any]:
    """Every value the client supplied: the signed ones among them name the issuers whose keys
    to load before verifying (IssuerKeys.load skips anything else)."""
    return [supplied.client_attestation, supplied.mandate, *supplied.parameters.values()]
