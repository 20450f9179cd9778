"""The Client Challenge rules and evidence verifiers (oauth-transports.md §5, TX-49..TX-61), with
real signed artifacts: keys are generated here, tokens signed with joserfc."""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from profiles.arop.errors import OAuthFailure
from profiles.client_challenge.attestation import ATTESTATION_TYP, POP_TYP, ClientAttestationVerifier
from profiles.arop.model import relayed_body
from profiles.client_challenge.challenge import (
    ERROR,
    STATUS,
    ChallengeSession,
    Presenter,
    challenge_response,
    check_follow_up,
    follow_up,
    open_session,
    requirement_for,
    resolvable_without_evidence,
    session_digest,
)
from profiles.client_challenge.evidence import EvidenceContext, EvidenceInput, registry
from profiles.client_challenge.mandate import TYP as MANDATE_TYP
from profiles.client_challenge.mandate import MandateVerifier

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AS = "https://as.broker.example"
CLIENT = "trader-7"
ATTESTER = "https://attester.example"
WALLET = "https://wallet.example/alice"


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)


ATTESTER_KEY, WALLET_KEY, INSTANCE_KEY = key("att-1"), key("wal-1"), key("inst-1")


def resolver(issuer: str, signing: ECKey) -> Any:
    return lambda iss, kid: signing if (iss, kid) == (issuer, signing.kid) else None


def sign(claims: dict[str, Any], signing: ECKey, typ: str, **header: Any) -> str:
    return jwt.encode({"alg": "ES256", "typ": typ, "kid": signing.kid, **header}, claims, signing)


def context(challenge: str = "cs-1", **changes: Any) -> EvidenceContext:
    fields: dict[str, Any] = {
        "client_id": CLIENT, "audience": AS, "challenge": challenge,
        "key_thumbprint": "jkt:" + INSTANCE_KEY.thumbprint(), "now": NOW, "skew": timedelta(seconds=30), **changes,
    }
    return EvidenceContext(**fields)


def refused(code: str, call: Any, *args: Any, **kwargs: Any) -> OAuthFailure:
    with pytest.raises(OAuthFailure) as caught:
        call(*args, **kwargs)
    assert caught.value.error == code, caught.value.description
    return caught.value


def tampered(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**body, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# -- client_attestation ---------------------------------------------------------------------


def attestation(signing: ECKey = ATTESTER_KEY, **changes: Any) -> str:
    claims = {
        "iss": ATTESTER, "sub": CLIENT, "iat": ts(NOW - timedelta(hours=1)), "exp": ts(NOW + timedelta(hours=1)),
        "cnf": {"jwk": INSTANCE_KEY.as_dict(private=False)}, "software_id": "trading-agent", **changes,
    }
    return sign({k: v for k, v in claims.items() if v is not None}, signing, ATTESTATION_TYP)


def pop(challenge: str = "cs-1", signing: ECKey = INSTANCE_KEY, **changes: Any) -> str:
    claims = {"iss": CLIENT, "aud": AS, "iat": ts(NOW), "jti": secrets.token_urlsafe(8), "challenge": challenge, **changes}
    return sign({k: v for k, v in claims.items() if v is not None}, signing, POP_TYP)


ATTESTATIONS = ClientAttestationVerifier(resolver(ATTESTER, ATTESTER_KEY))


def attested(attestation_jwt: str, pop_jwt: str, **changes: Any) -> Any:
    return ATTESTATIONS.verify(EvidenceInput(client_attestation=attestation_jwt, client_attestation_pop=pop_jwt), context(**changes))


def test_client_attestation_valid_evidence_reaches_policies_with_its_claims() -> None:
    verified = attested(attestation(), pop(jti="p-1"))
    assert (verified.type, verified.issuer) == ("client_attestation", ATTESTER)
    assert verified.claims == {"iss": ATTESTER, "sub": CLIENT, "software_id": "trading-agent"}  # no cnf, exp, iat
    assert verified.jti == f"{CLIENT}\0p-1" and verified.remember_until > NOW  # the service remembers it once


@pytest.mark.parametrize(
    ("attestation_changes", "pop_changes", "why"),
    [
        ({"exp": ts(NOW - timedelta(minutes=5))}, {}, "expired attestation"),
        ({"iss": "https://rogue-attester.example"}, {}, "attester not trusted"),
        ({"sub": "trader-9"}, {}, "attestation of another client"),
        ({"cnf": {"jwk": INSTANCE_KEY.as_dict(private=True)}}, {}, "a private key in cnf"),
        ({"cnf": None}, {}, "no cnf"),
        ({}, {"aud": "https://another-as.example"}, "proof for another AS"),
        ({}, {"challenge": "cs-other"}, "proof for another challenge: a replay"),
        ({}, {"challenge": None}, "proof without a challenge"),
        ({}, {"iss": "trader-9"}, "proof by another client"),
        ({}, {"iat": ts(NOW - timedelta(minutes=10))}, "stale proof"),
        ({}, {"iat": ts(NOW + timedelta(minutes=10))}, "proof from the future"),
        ({}, {"jti": None}, "proof without jti"),
    ],
)
def test_tx_57_client_attestation_that_does_not_hold_is_unauthorized_client(attestation_changes: dict[str, Any], pop_changes: dict[str, Any], why: str) -> None:
    failure = refused("unauthorized_client", attested, attestation(**attestation_changes), pop(**pop_changes))
    assert failure.description, why


def test_tx_57_client_attestation_signatures_are_checked() -> None:
    refused("unauthorized_client", attested, tampered(attestation(), sub=CLIENT, software_id="admin-tool"), pop())
    refused("unauthorized_client", attested, attestation(), tampered(pop(), challenge="cs-1", aud=AS, jti="x"))
    refused("unauthorized_client", attested, attestation(), pop(signing=key("inst-1")))  # not the attested key
    forged_attester = key("att-1")
    refused("unauthorized_client", attested, attestation(signing=forged_attester), pop())


def test_tx_57_client_attestation_needs_both_tokens_and_typed_ones() -> None:
    refused("unauthorized_client", ATTESTATIONS.verify, EvidenceInput(client_attestation=attestation()), context())
    wrong_typ = sign(json.loads(base64.urlsafe_b64decode(attestation().split(".")[1] + "==")), ATTESTER_KEY, "jwt")
    refused("unauthorized_client", attested, wrong_typ, pop())


def test_tx_57_no_mac_or_unsigned_evidence() -> None:
    secret = OctKey.generate_key(256)
    claims = json.loads(base64.urlsafe_b64decode(attestation().split(".")[1] + "=="))
    hs256 = jwt.encode({"alg": "HS256", "typ": ATTESTATION_TYP, "kid": "att-1"}, claims, secret)
    refused("unauthorized_client", attested, hs256, pop())
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": ATTESTATION_TYP}).encode()).rstrip(b"=").decode()
    refused("unauthorized_client", attested, f"{header}.{attestation().split('.')[1]}.", pop())


# -- mandate ---------------------------------------------------------------------------------


def mandate(signing: ECKey = WALLET_KEY, **changes: Any) -> str:
    claims = {
        "iss": WALLET, "sub": "alice", "aud": AS, "client_id": CLIENT, "iat": ts(NOW - timedelta(minutes=1)),
        "exp": ts(NOW + timedelta(days=1)), "jti": "m-1", "cnf": {"jkt": INSTANCE_KEY.thumbprint()},
        "actions": ["buy"], "max_amount": 10000, **changes,
    }
    return sign({k: v for k, v in claims.items() if v is not None}, signing, MANDATE_TYP)


MANDATES = MandateVerifier(resolver(WALLET, WALLET_KEY))


def mandated(token: str, **changes: Any) -> Any:
    return MANDATES.verify(EvidenceInput(mandate=token), context(**changes))


def test_mandate_valid_evidence_carries_its_constraints_to_policies() -> None:
    verified = mandated(mandate())
    assert (verified.type, verified.issuer, verified.jti) == ("mandate", WALLET, None)
    user = {"__entity": {"type": "User", "id": "alice"}}  # for policies: whose mandate it is
    assert verified.claims == {"iss": WALLET, "sub": "alice", "user": user, "client_id": CLIENT, "actions": ["buy"], "max_amount": 10000}
    assert verified.expires_at == NOW + timedelta(days=1)  # the mandate bounds the grant (D-CC-5)


def test_mandate_user_type_is_configurable() -> None:
    verified = MandateVerifier(resolver(WALLET, WALLET_KEY), user_type="Customer").verify(EvidenceInput(mandate=mandate()), context())
    assert verified.claims["user"] == {"__entity": {"type": "Customer", "id": "alice"}}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": ts(NOW - timedelta(minutes=5))}, "expired"),
        ({"exp": None}, "no exp"),
        ({"iat": ts(NOW + timedelta(hours=1))}, "issued in the future"),
        ({"iss": "https://wallet.example/mallory"}, "issuer not trusted"),
        ({"aud": "https://another-as.example"}, "for another AS"),
        ({"client_id": "trader-9"}, "for another client"),
        ({"cnf": {"jkt": key("other").thumbprint()}}, "bound to another key"),
        ({"cnf": None}, "bound to no key"),
        ({"jti": None}, "no jti"),
        ({"sub": None}, "no user"),
    ],
)
def test_tx_57_a_mandate_that_does_not_hold_is_unauthorized_client(changes: dict[str, Any], why: str) -> None:
    assert refused("unauthorized_client", mandated, mandate(**changes)).description, why


def test_tx_61_a_mandate_replayed_from_another_key_is_refused() -> None:
    refused("unauthorized_client", mandated, mandate(), key_thumbprint="jkt:" + key("thief").thumbprint())
    refused("unauthorized_client", mandated, mandate(), key_thumbprint="")  # no key proven at all


def test_tx_57_a_tampered_or_misissued_mandate_is_refused() -> None:
    refused("unauthorized_client", mandated, tampered(mandate(), max_amount=10**9))
    refused("unauthorized_client", mandated, mandate(signing=key("wal-1")))  # right kid, wrong key
    refused("unauthorized_client", MANDATES.verify, EvidenceInput(), context())  # nothing supplied


# -- the challenge and its session -------------------------------------------------------------


VERIFIERS = registry({"client_attestation": ATTESTATIONS, "mandate": MANDATES})


KEYED = "jkt:abc"


def challenge_for(pairs: list[tuple[str, list[str]]], *, supports: bool = True, key_thumbprint: str = KEYED, presented: str | None = None) -> str | None:
    return requirement_for(pairs, client_supports=supports, key_thumbprint=key_thumbprint, presented=presented, verifiers=VERIFIERS)  # type: ignore[arg-type]


def test_tx_59_only_clients_that_declared_support_are_challenged() -> None:
    assert challenge_for([("deny", ["mandate"])], supports=False) is None
    assert challenge_for([("deny", ["mandate"])]) == "mandate"


def test_tx_61_d_cc_4_only_a_client_that_proves_a_key_is_challenged() -> None:
    assert challenge_for([("deny", ["mandate"])], key_thumbprint="") is None
    assert challenge_for([("deny", ["mandate"])], key_thumbprint="x5t#S256:abc") == "mandate"


def test_tx_56_only_types_with_a_verifier_are_asked_for() -> None:
    assert challenge_for([("deny", ["verifiable_presentation", "client_attestation"])]) == "client_attestation"
    assert challenge_for([("deny", ["verifiable_presentation"])]) is None


def test_design_3_a_denial_no_evidence_can_lift_is_not_challenged() -> None:
    assert challenge_for([("allow", []), ("deny", ["mandate"]), ("deny", [])]) is None  # the plain denial ends it
    assert challenge_for([("allow", []), ("requestable", [])]) is None  # nothing to challenge for
    assert challenge_for([("allow", ["mandate"]), ("requestable", [])]) is None  # an allowed pair's permits do not count


def test_design_3_the_challenge_comes_before_approval_and_composes_with_it() -> None:
    assert challenge_for([("requestable", ["mandate"])]) == "mandate"
    assert challenge_for([("deny", ["mandate"]), ("requestable", [])]) == "mandate"  # the rest stays requestable


def test_design_3_evidence_presented_on_this_request_is_not_asked_for_again() -> None:
    assert challenge_for([("requestable", ["mandate"])], presented="mandate") is None
    assert challenge_for([("deny", ["mandate", "client_attestation"])], presented="mandate") == "client_attestation"


def test_design_3_one_type_must_serve_every_challengeable_pair() -> None:
    assert challenge_for([("deny", ["client_attestation", "mandate"]), ("deny", ["mandate"])]) == "mandate"
    assert challenge_for([("deny", ["client_attestation"]), ("deny", ["mandate"])]) is None


def test_tx_49_tx_50_tx_51_tx_52_the_response_names_a_typed_requirement_a_session_and_its_life() -> None:
    record, answer = open_session(MANDATES, PRESENTER, request_digest="r-1", now=NOW, ttl=timedelta(minutes=2))
    assert answer.status == STATUS == 403 and answer.error == ERROR == "insufficient_client_authorization"
    assert answer.authorization_requirement == {"type": "mandate", "mandate_types": ["mandate+jwt"], "parameter": "mandate"}
    session = answer.challenge_session
    assert relayed_body(answer) == {
        "error": ERROR, "authorization_requirement": answer.authorization_requirement, "challenge_session": session, "expires_in": 120,
    }
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session)  # TX-51: opaque, 256 bits
    assert record.session_digest == session_digest(session) != session and record.expires_at == NOW + timedelta(minutes=2)
    with pytest.raises(ValueError):
        challenge_response({"presentation_definition": {}}, session, 120)  # TX-50: type is required


def test_tx_57_without_the_evidence_only_approval_can_resolve_the_request() -> None:
    assert resolvable_without_evidence(["allow", "requestable"])  # approval is another way
    assert resolvable_without_evidence(["allow"])
    assert not resolvable_without_evidence(["requestable", "deny"])  # no other way: unauthorized_client


def test_tx_58_evidence_answers_a_session() -> None:
    assert follow_up(None, None) is None
    assert follow_up("cs-1", None) == ("cs-1", EvidenceInput())  # for the verifier to refuse (TX-57)
    refused("invalid_request", follow_up, None, EvidenceInput(mandate="m"))


PRESENTER = Presenter("as", CLIENT, "private_key_jwt", KEYED)


def _session(**changes: Any) -> ChallengeSession:
    fields: dict[str, Any] = {
        "session_digest": session_digest("cs-1"), "requirement_type": "mandate", "issued_to": PRESENTER, "request_digest": "r-1",
        "expires_at": NOW + timedelta(minutes=2), **changes,
    }
    return ChallengeSession(**fields)


def test_tx_58_a_follow_up_by_the_same_client_method_and_key_answers_the_session() -> None:
    assert check_follow_up(_session(), PRESENTER, request_digest="r-1", now=NOW) == _session()


def test_tx_58_a_follow_up_repeats_the_challenged_request() -> None:
    refused("invalid_request", check_follow_up, _session(), PRESENTER, request_digest="r-2", now=NOW)


@pytest.mark.parametrize(
    ("session", "presenter"),
    [
        (None, {}),  # unknown, or already answered (the store hands a session out once)
        (_session(expires_at=NOW), {}),  # TX-52: expired
        (_session(), {"key_thumbprint": "jkt:another"}),  # TX-61: replayed from another key
        (_session(), {"client_id": "trader-9"}),
        (_session(), {"auth_method": "client_secret_post"}),
        (_session(), {"authority": "another-as"}),
    ],
)
def test_tx_61_s5_4_an_unknown_expired_spent_or_foreign_session_is_invalid_grant(session: ChallengeSession | None, presenter: dict[str, str]) -> None:
    who = msgspec.structs.replace(PRESENTER, **presenter)
    refused("invalid_grant", check_follow_up, session, who, request_digest="r-2", now=NOW)


def test_tx_56_a_verifier_is_registered_under_its_own_type() -> None:
    with pytest.raises(ValueError):
        registry({"vp": MANDATES})


# -- the extension point (services/oauth/client_challenge.py) ----------------------------------


def _entry(**members: Any) -> Any:
    from services.config import EvidenceVerifierConfig
    from services.oauth.issuer_keys import TrustedIssuer

    return EvidenceVerifierConfig(issuers=[TrustedIssuer(issuer=WALLET, jwks={"keys": []})], **members)


def test_tx_56_built_in_and_extension_verifiers_are_built_from_configuration() -> None:
    from services.oauth.client_challenge import build_verifier

    assert isinstance(build_verifier(_entry(type="mandate"), lambda iss, kid: None), MandateVerifier)
    attestations = build_verifier(_entry(type="client_attestation", options={"max_pop_age": 60}), lambda iss, kid: None)
    assert isinstance(attestations, ClientAttestationVerifier) and attestations.max_pop_age == timedelta(seconds=60)
    licence = build_verifier(_entry(type="broker_licence", factory="tests.oauth.licence_verifier:BrokerLicenceVerifier", options={"parameter": "lic"}), lambda iss, kid: None)
    assert licence.type == "broker_licence" and licence.requirement()["parameter"] == "lic"


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "vp", "factory": "no.such.module:Verifier"},
        {"type": "vp", "factory": "tests.oauth.licence_verifier:NoSuchVerifier"},
        {"type": "vp", "factory": "tests.oauth.licence_verifier:BrokerLicenceVerifier"},  # verifies another type
        {"type": "mandate", "options": {"max_amount": 5}},  # an option the verifier does not take
    ],
)
def test_tx_56_a_verifier_that_cannot_be_built_is_a_configuration_error(entry: dict[str, Any]) -> None:
    from services.config import ConfigError
    from services.oauth.client_challenge import build_verifier

    with pytest.raises(ConfigError):
        build_verifier(_entry(**entry), lambda iss, kid: None)
