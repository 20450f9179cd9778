"""The OAuth Client Challenge end to end (oauth-transports.md §5, TX-49..TX-62; DESIGN.md §3):
the real service on the trading-agent bundle, the test AS relaying, a real client answering
with real signed artifacts (keys generated here): a user's mandate, a client attestation with
its proof of possession, and a broker licence verified by an extension (licence_verifier.py).

trader-7 registered `insufficient_client_authorization_supported`; trader-9 did not. The
policies (examples/agents, plus sells here): buys above 1,000 may be challenged for the owner's
mandate and are allowed up to its `max_amount`, or are requestable through the owner's approval
up to 50,000; sells up to 20,000 for a client attestation from the trusted attester, above that
for a broker licence covering the amount.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from services.config import REPO_ROOT
from tests.oauth.conftest import CLIENTS, Deployment, OAuthClient, claims_of, deployment, new_task, wait_interval
from tests.server import free_port

WALLET = "https://wallet.example/alice"  # the wallet service that signs alice's (and anyone's) mandates
ATTESTER = "https://attester.example"  # vouches for genuine trading-agent instances
REGULATOR = "https://regulator.example"  # licenses brokers (the extension type)
SESSION_TTL = 3
DETAILS = {"type": "trade", "identifier": "alice-main", "actions": ["buy"]}


def _key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)


def _inline(value: Any) -> str:
    """JSON as a TOML inline value (quoted keys; the strings here need no TOML-only escapes)."""
    return json.dumps(value, separators=(", ", " = "))


class Trust:
    """The issuers this AS trusts, with their signing keys, and the artifacts they sign."""

    def __init__(self) -> None:
        self.wallet, self.attester, self.regulator = _key("wallet-1"), _key("attester-1"), _key("regulator-1")
        self.audience = ""

    def oauth(self, as_port: int) -> str:
        self.audience = f"http://127.0.0.1:{as_port}"

        def verifier(kind: str, issuer: str, key: ECKey, extra: str = "") -> str:
            jwks = {"keys": [{**key.as_dict(private=False), "kid": key.kid}]}
            return f'[[oauth.client_challenge.verifiers]]\ntype = "{kind}"\n{extra}issuers = [{{ issuer = "{issuer}", jwks = {_inline(jwks)} }}]\n'

        return (
            f'issuer = "{self.audience}"\n[oauth.client_challenge]\nsession_ttl = {SESSION_TTL}\n'
            + verifier("mandate", WALLET, self.wallet)
            + verifier("client_attestation", ATTESTER, self.attester)
            + verifier("broker_licence", REGULATOR, self.regulator, 'factory = "tests.oauth.licence_verifier:BrokerLicenceVerifier"\n')
        )

    def mandate(self, client: OAuthClient, *, max_amount: int = 10_000, key: ECKey | None = None, **claims: Any) -> str:
        """alice's mandate for `client`'s agent, bound to its DPoP key."""
        now = int(time.time())
        body = {
            "iss": WALLET, "sub": "alice", "aud": self.audience, "client_id": client.client_id, "iat": now, "exp": now + 300,
            "jti": secrets.token_urlsafe(12), "cnf": {"jkt": client.jkt}, "max_amount": max_amount, "actions": ["buy"], **claims,
        }
        return jwt.encode({"alg": "ES256", "typ": "mandate+jwt", "kid": "wallet-1"}, body, key or self.wallet)

    def attestation(self, client: OAuthClient, instance: ECKey, *, key: ECKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ATTESTER, "sub": client.client_id, "iat": now, "exp": now + 3600, "cnf": {"jwk": instance.as_dict(private=False)}, **claims}
        return jwt.encode({"alg": "ES256", "typ": "oauth-client-attestation+jwt", "kid": "attester-1"}, body, key or self.attester)

    def pop(self, client: OAuthClient, instance: ECKey, session: str, **claims: Any) -> str:
        body = {"iss": client.client_id, "aud": self.audience, "iat": int(time.time()), "jti": secrets.token_urlsafe(12), "challenge": session, **claims}
        return jwt.encode({"alg": "ES256", "typ": "oauth-client-attestation-pop+jwt"}, body, instance)

    def licence(self, client: OAuthClient, session: str, *, licensed_up_to: int = 100_000, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": REGULATOR, "sub": client.client_id, "aud": self.audience, "iat": now, "exp": now + 600, "jti": secrets.token_urlsafe(12),
            "nonce": session, "cnf": {"jkt": client.jkt}, "licensed_up_to": licensed_up_to, **claims,
        }
        return jwt.encode({"alg": "ES256", "typ": "licence+jwt", "kid": "regulator-1"}, body, self.regulator)


def challenge_bundle(bundle: Path) -> None:
    """Sells above the standing 1,000: an attested agent up to 20,000, a licensed one above."""
    schema = bundle / "schema.cedarschema"
    schema.write_text(schema.read_text().replace("    max_amount?: Long,\n", "    max_amount?: Long,\n    licensed_up_to?: Long,\n", 1))
    with (bundle / "policies.cedar").open("a") as policies:
        policies.write(
            '\n@id("sell-with-attestation") @challenge("client_attestation")\n'
            'permit (principal is Agent, action == Action::"sell", resource is Portfolio)\n'
            "when { principal.acts_for == resource.owner && context.amount <= 20000 };\n"
            '@id("attested-agent-sells")\n'
            'permit (principal is Agent, action == Action::"sell", resource is Portfolio)\n'
            "when { principal.acts_for == resource.owner && context.amount <= 20000 && context has client_evidence &&\n"
            f'       context.client_evidence.type == "client_attestation" && context.client_evidence.claims has iss &&\n'
            f'       context.client_evidence.claims.iss == "{ATTESTER}" }};\n'
            '@id("sell-with-licence") @challenge("broker_licence")\n'
            'permit (principal is Agent, action == Action::"sell", resource is Portfolio)\n'
            "when { principal.acts_for == resource.owner && context.amount > 20000 };\n"
            '@id("licensed-agent-sells")\n'
            'permit (principal is Agent, action == Action::"sell", resource is Portfolio)\n'
            "when { principal.acts_for == resource.owner && context has client_evidence &&\n"
            '       context.client_evidence.type == "broker_licence" && context.client_evidence.claims has licensed_up_to &&\n'
            "       context.client_evidence.claims.licensed_up_to >= context.amount };\n"
        )


class Setup:
    def __init__(self, deployed: Deployment, trust: Trust) -> None:
        self.deployed, self.trust = deployed, trust

    def client(self, client_id: str = "trader-7") -> OAuthClient:
        return self.deployed.client(client_id)

    def challenged(self, client: OAuthClient, amount: int, action: str = "buy", **members: str) -> str:
        """A trade the policy challenges: its `challenge_session`."""
        response = client.trade(amount, action=action, **members)
        assert response.status_code == 403, response.text
        return str(response.json()["challenge_session"])


@pytest.fixture(scope="module")
def setup(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    trust = Trust()
    port = free_port()
    as_options = {"port": port, "challenge_clients": frozenset({"trader-7"})}
    env = {"PYTHONPATH": str(REPO_ROOT)}  # the extension verifier is a module of this repository's tests
    workdir = tmp_path_factory.mktemp(f"client-challenge-{backend}")
    with deployment(backend, workdir, trust.oauth(port), edit_bundle=challenge_bundle, as_options=as_options, env=env) as deployed:
        yield Setup(deployed, trust)


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


# -- the challenge (TX-49..TX-54, TX-59) -------------------------------------------------------


def test_tx_49_tx_50_tx_51_tx_52_tx_54_a_supporting_client_is_challenged_with_403(setup: Setup) -> None:
    response = setup.client().trade(5000)
    assert response.status_code == 403  # TX-49: the draft's status
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "authorization_requirement", "challenge_session", "expires_in"}
    assert body["error"] == "insufficient_client_authorization"
    assert body["authorization_requirement"] == {"type": "mandate", "mandate_types": ["mandate+jwt"], "parameter": "mandate"}  # TX-50
    assert len(body["challenge_session"]) >= 43 and body["expires_in"] == SESSION_TTL  # TX-51: 256 random bits; TX-52


def test_tx_59_a_client_that_did_not_declare_support_gets_the_ordinary_answer(setup: Setup) -> None:
    response = setup.client("trader-9").trade(5000, portfolio="bob-main")  # bob's agent, bob's portfolio
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"
    assert "challenge_session" not in response.json() and "approval_obtainable" in response.json()  # requestable, as ever


def test_design_3_standing_access_and_forbids_are_never_challenged(setup: Setup) -> None:
    client = setup.client()
    assert client.trade(500).status_code == 200  # standing access
    frozen = client.trade(5000, portfolio="alice-frozen")
    assert frozen.status_code == 400 and error_of(frozen) == "invalid_authorization_details"  # a forbid wins


def test_tx_61_d_cc_4_a_client_without_a_key_is_not_challenged(setup: Setup) -> None:
    client = setup.client()
    details = json.dumps([{**DETAILS, "amount": 5000}])
    form = client.form(grant_type="client_credentials", authorization_details=details, resource="https://broker.example")
    response = client.http.post("/token", data=form)  # no DPoP: nothing to bind a session or a token to
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"


# -- the follow-up (TX-51, TX-52, TX-56..TX-58, TX-60, TX-61) -------------------------------------


def test_tx_58_tx_60_tx_62_a_mandate_within_its_limit_gets_a_sender_constrained_token_bounded_by_it(setup: Setup) -> None:
    client = setup.client()
    session = setup.challenged(client, 5000)
    mandate = setup.trust.mandate(client)
    response = client.trade(5000, challenge_session=session, mandate=mandate)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP" and "refresh_token" not in body  # D-CC-5: no refresh without the evidence
    claims = claims_of(body["access_token"])
    assert claims["authorization_details"] == [{**DETAILS, "amount": 5000}] == body["authorization_details"]  # never more than asked
    assert claims["cnf"] == {"jkt": client.jkt}  # TX-60
    assert claims["exp"] <= claims_of(mandate)["exp"]  # the mandate bounds the token


def test_tx_51_a_session_is_answered_once(setup: Setup) -> None:
    client = setup.client()
    session = setup.challenged(client, 3000)
    mandate = setup.trust.mandate(client)
    assert client.trade(3000, challenge_session=session, mandate=mandate).status_code == 200
    again = client.trade(3000, challenge_session=session, mandate=mandate)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"


def test_tx_61_a_session_replayed_from_another_key_is_refused_and_stays_the_clients(setup: Setup) -> None:
    client = setup.client()
    session = setup.challenged(client, 4000)
    thief = setup.client()  # the same client id and secret, another DPoP key
    stolen = thief.trade(4000, challenge_session=session, mandate=setup.trust.mandate(thief))
    assert stolen.status_code == 400 and error_of(stolen) == "invalid_grant"
    assert client.trade(4000, challenge_session=session, mandate=setup.trust.mandate(client)).status_code == 200


def test_tx_61_a_session_of_another_client_is_refused(setup: Setup) -> None:
    session = setup.challenged(setup.client(), 4000)
    other = setup.client("trader-9")
    response = other.trade(4000, challenge_session=session, mandate=setup.trust.mandate(other))
    assert response.status_code == 400 and error_of(response) == "invalid_grant"


def test_tx_52_s5_4_an_unknown_or_expired_session_is_invalid_grant(setup: Setup) -> None:
    client = setup.client()
    unknown = client.trade(5000, challenge_session=secrets.token_urlsafe(32), mandate=setup.trust.mandate(client))
    assert unknown.status_code == 400 and error_of(unknown) == "invalid_grant"
    session = setup.challenged(client, 5000)
    time.sleep(SESSION_TTL + 0.3)
    expired = client.trade(5000, challenge_session=session, mandate=setup.trust.mandate(client))
    assert expired.status_code == 400 and error_of(expired) == "invalid_grant"


def test_tx_58_a_follow_up_repeats_the_challenged_request(setup: Setup) -> None:
    client = setup.client()
    session = setup.challenged(client, 5000)
    changed = client.trade(6000, challenge_session=session, mandate=setup.trust.mandate(client))
    assert changed.status_code == 400 and error_of(changed) == "invalid_request"
    assert client.trade(5000, challenge_session=session, mandate=setup.trust.mandate(client)).status_code == 200  # not spent


def test_tx_51_evidence_without_its_session_is_invalid_request(setup: Setup) -> None:
    client = setup.client()
    response = client.trade(5000, mandate=setup.trust.mandate(client))
    assert response.status_code == 400 and error_of(response) == "invalid_request"


def _tampered(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**body, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


# Buys of 60,000: above what alice may approve, so only a mandate could allow them and a failed one
# has no other way out (TX-57). Below 50,000 a failed answer goes on to approval instead.
BEYOND_APPROVAL = 60_000

MANDATE_FAILURES = {
    "expired": lambda trust, client: trust.mandate(client, iat=int(time.time()) - 900, exp=int(time.time()) - 600),
    "wrong issuer": lambda trust, client: trust.mandate(client, key=_key("wallet-1"), iss="https://wallet.example/mallory"),
    "right issuer, wrong key": lambda trust, client: trust.mandate(client, key=_key("wallet-1")),
    "wrong audience": lambda trust, client: trust.mandate(client, aud="https://another-as.example"),
    "tampered": lambda trust, client: _tampered(trust.mandate(client), max_amount=10**9),
    "replayed by another agent": lambda trust, client: trust.mandate(client, cnf={"jkt": ECKey.generate_key("P-256").thumbprint()}),
    "another client's": lambda trust, client: trust.mandate(client, client_id="trader-9"),
    "missing": lambda trust, client: "",
}


@pytest.mark.parametrize("failure", list(MANDATE_FAILURES))
def test_tx_57_evidence_that_fails_is_unauthorized_client_and_spends_the_session(setup: Setup, failure: str) -> None:
    client = setup.client()
    session = setup.challenged(client, BEYOND_APPROVAL)
    bad = MANDATE_FAILURES[failure](setup.trust, client)
    response = client.trade(BEYOND_APPROVAL, challenge_session=session, **({"mandate": bad} if bad else {}))
    assert response.status_code == 400 and error_of(response) == "unauthorized_client", response.text
    retry = client.trade(BEYOND_APPROVAL, challenge_session=session, mandate=setup.trust.mandate(client, max_amount=100_000))
    assert retry.status_code == 400 and error_of(retry) == "invalid_grant"  # no second try on one challenge


@pytest.mark.parametrize(
    ("mandate", "what"),
    [({"sub": "bob"}, "bob's mandate for alice's portfolio"), ({"actions": ["sell"]}, "a mandate to sell, for a buy")],
)
def test_tx_56_a_valid_mandate_allows_only_what_it_says(setup: Setup, mandate: dict[str, Any], what: str) -> None:
    """The mandate verifies (a trusted issuer signs for every user), but the policy reads who it
    is from and what it allows: neither covers this buy, and no approval path covers 60,000."""
    client = setup.client()
    session = setup.challenged(client, BEYOND_APPROVAL)
    response = client.trade(BEYOND_APPROVAL, challenge_session=session, mandate=setup.trust.mandate(client, max_amount=100_000, **mandate))
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details", what


def test_tx_57_design_3_a_client_that_cannot_satisfy_the_challenge_may_still_ask_for_approval(setup: Setup) -> None:
    """No mandate at hand: the agent answers the session without evidence, with the DTR opt-in.
    Approval is another way to resolve the request, so it is deferred, not refused."""
    deployed, client = setup.deployed, setup.client()
    session = setup.challenged(client, 7000, completion_mode="deferred")
    before = deployed.inbox()
    pending = client.trade(7000, completion_mode="deferred", challenge_session=session)
    assert pending.status_code == 400 and error_of(pending) == "authorization_pending", pending.text
    deployed.review(new_task(deployed, before), "approve", reason="fine")
    wait_interval()
    issued = client.poll(pending.json()["deferral_code"])
    assert issued.status_code == 200, issued.text
    assert "refresh_token" in issued.json()  # an approval alone: refreshable as usual


def test_tx_57_evidence_that_fails_where_approval_remains_gets_the_ordinary_requestable_answer(setup: Setup) -> None:
    """D-CC-7: 7,000 is requestable from alice, so a failed mandate is not the end of it."""
    client = setup.client()
    session = setup.challenged(client, 7000)
    response = client.trade(7000, challenge_session=session, mandate=setup.trust.mandate(client, aud="https://another-as.example"))
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"
    assert response.json()["approval_obtainable"] == {"retry_with": ["completion_mode=deferred"]}
    spent = client.trade(7000, challenge_session=session, mandate=setup.trust.mandate(client))
    assert spent.status_code == 400 and error_of(spent) == "invalid_grant"


# -- requirement types: client attestation and an extension (TX-56) ------------------------------


def attested(setup: Setup, client: OAuthClient, instance: ECKey, session: str, **pop_claims: Any) -> dict[str, str]:
    return {
        "OAuth-Client-Attestation": setup.trust.attestation(client, instance),
        "OAuth-Client-Attestation-PoP": setup.trust.pop(client, instance, session, **pop_claims),
    }


def test_tx_56_a_client_attestation_answers_its_challenge(setup: Setup) -> None:
    client, instance = setup.client(), _key("instance-1")
    response = client.trade(8000, action="sell")
    assert response.status_code == 403
    body = response.json()
    assert body["authorization_requirement"]["type"] == "client_attestation"
    assert body["authorization_requirement"]["pop_types"] == ["oauth-client-attestation-pop+jwt"]
    session = body["challenge_session"]
    answered = client.trade(8000, action="sell", challenge_session=session, headers=attested(setup, client, instance, session))
    assert answered.status_code == 200, answered.text
    assert claims_of(answered.json()["access_token"])["authorization_details"][0]["actions"] == ["sell"]


ATTESTATION_FAILURES = {
    "proof over another challenge": lambda setup, client, instance, session: attested(setup, client, instance, "cs-of-another-challenge"),
    "proof by another key": lambda setup, client, instance, session: {
        **attested(setup, client, instance, session), "OAuth-Client-Attestation-PoP": setup.trust.pop(client, _key("x"), session),
    },
    "untrusted attester": lambda setup, client, instance, session: {
        **attested(setup, client, instance, session), "OAuth-Client-Attestation": setup.trust.attestation(client, instance, key=_key("attester-1")),
    },
    "expired attestation": lambda setup, client, instance, session: {
        **attested(setup, client, instance, session),
        "OAuth-Client-Attestation": setup.trust.attestation(client, instance, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
    },
    "stale proof": lambda setup, client, instance, session: attested(setup, client, instance, session, iat=int(time.time()) - 3600),
    "proof for another audience": lambda setup, client, instance, session: attested(setup, client, instance, session, aud="https://another-as.example"),
    "tampered attestation": lambda setup, client, instance, session: {
        **attested(setup, client, instance, session),
        "OAuth-Client-Attestation": _tampered(setup.trust.attestation(client, instance), sub="trader-9"),
    },
    "without its proof": lambda setup, client, instance, session: {"OAuth-Client-Attestation": setup.trust.attestation(client, instance)},
}


@pytest.mark.parametrize("failure", list(ATTESTATION_FAILURES))
def test_tx_57_a_client_attestation_that_fails_is_unauthorized_client(setup: Setup, failure: str) -> None:
    client, instance = setup.client(), _key("instance-1")
    session = setup.challenged(client, 8000, action="sell")
    headers = ATTESTATION_FAILURES[failure](setup, client, instance, session)
    response = client.trade(8000, action="sell", challenge_session=session, headers=headers)
    assert response.status_code == 400 and error_of(response) == "unauthorized_client", response.text


def test_tx_56_a_replayed_attestation_proof_is_refused(setup: Setup) -> None:
    """The proof answers one session; presented again with a new one it answers nothing."""
    client, instance = setup.client(), _key("instance-1")
    first = setup.challenged(client, 8000, action="sell")
    headers = attested(setup, client, instance, first)
    assert client.trade(8000, action="sell", challenge_session=first, headers=headers).status_code == 200
    second = setup.challenged(client, 8000, action="sell")
    replayed = client.trade(8000, action="sell", challenge_session=second, headers=headers)
    assert replayed.status_code == 400 and error_of(replayed) == "unauthorized_client"


def test_tx_56_an_extension_type_is_challenged_for_and_verified_by_its_own_verifier(setup: Setup) -> None:
    client = setup.client()
    response = client.trade(30_000, action="sell")
    assert response.status_code == 403
    assert response.json()["authorization_requirement"] == {"type": "broker_licence", "credential_types": ["licence+jwt"], "parameter": "vp_token"}
    session = response.json()["challenge_session"]
    licence = setup.trust.licence(client, session)
    assert client.trade(30_000, action="sell", challenge_session=session, vp_token=licence).status_code == 200
    # The same licence again, on a new challenge: its nonce is the old session.
    again = setup.challenged(client, 30_000, action="sell")
    replayed = client.trade(30_000, action="sell", challenge_session=again, vp_token=licence)
    assert replayed.status_code == 400 and error_of(replayed) == "unauthorized_client"


def test_tx_56_what_the_evidence_allows_bounds_the_grant(setup: Setup) -> None:
    """A licence up to 25,000 does not cover a sell of 30,000: the evidence verifies, the policy
    still denies, and no type is left to ask for (the licence was presented): the ordinary error."""
    client = setup.client()
    session = setup.challenged(client, 30_000, action="sell")
    response = client.trade(30_000, action="sell", challenge_session=session, vp_token=setup.trust.licence(client, session, licensed_up_to=25_000))
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"


# -- composition with approval (DESIGN §3, examples/agents) ------------------------------------


def test_design_3_above_the_mandate_the_buy_becomes_requestable_through_approval(setup: Setup) -> None:
    """A buy of 20,000 with a mandate of 10,000: the challenge comes first, the mandate does not
    cover the amount, and with the DTR opt-in the request goes to alice for approval; her
    approval issues the token, still bounded by the mandate."""
    deployed, client = setup.deployed, setup.client()
    session = setup.challenged(client, 20_000, completion_mode="deferred")
    mandate = setup.trust.mandate(client)
    before = deployed.inbox()
    pending = client.trade(20_000, completion_mode="deferred", challenge_session=session, mandate=mandate)
    assert pending.status_code == 400 and error_of(pending) == "authorization_pending", pending.text
    code = pending.json()["deferral_code"]
    deployed.review(new_task(deployed, before), "approve", reason="within the Q4 plan")
    wait_interval()
    issued = client.poll(code)
    assert issued.status_code == 200, issued.text
    claims = claims_of(issued.json()["access_token"])
    assert claims["authorization_details"] == [{**DETAILS, "amount": 20_000}] and claims["exp"] <= claims_of(mandate)["exp"]
    assert "refresh_token" not in issued.json()  # D-CC-5: the grant rests on the mandate too


def test_design_3_without_the_opt_in_an_uncovered_buy_is_told_approval_is_obtainable(setup: Setup) -> None:
    client = setup.client()
    session = setup.challenged(client, 20_000)
    response = client.trade(20_000, challenge_session=session, mandate=setup.trust.mandate(client))
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"
    assert response.json()["approval_obtainable"] == {"retry_with": ["completion_mode=deferred"]}


def test_design_3_beyond_every_path_the_buy_is_refused(setup: Setup) -> None:
    """60,000: above what alice's approval may cover; a mandate of 10,000 does not cover it."""
    client = setup.client()
    session = setup.challenged(client, 60_000)
    response = client.trade(60_000, challenge_session=session, mandate=setup.trust.mandate(client))
    assert response.status_code == 400 and error_of(response) == "invalid_authorization_details"
    assert "approval_obtainable" not in response.json()
    covering = setup.challenged(client, 60_000)
    assert client.trade(60_000, challenge_session=covering, mandate=setup.trust.mandate(client, max_amount=100_000)).status_code == 200


def test_tx_62_the_names_on_the_wire(setup: Setup) -> None:
    """TX-62: `challenge_session` (token request and response), the token endpoint error
    `insufficient_client_authorization`, the client metadata `insufficient_client_authorization_supported`
    (the AS passes it; trader-7 registered it)."""
    assert setup.deployed.authorization_server.challenge_clients == frozenset({"trader-7"}) and "trader-7" in CLIENTS
    client = setup.client()
    response = client.trade(2500)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_client_authorization"
    assert client.trade(2500, challenge_session=response.json()["challenge_session"], mandate=setup.trust.mandate(client)).status_code == 200
