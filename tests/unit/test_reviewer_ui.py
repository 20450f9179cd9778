"""The reviewer UI's rules that need no browser: where sign-in may send a browser, how an ID
token is verified, the configuration and what pages show."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from services.config import ConfigError, OidcConfig, load_config
from services.jwks import JwksCache
from services.reviewer import views
from services.reviewer.accounts import LocalAccounts, hash_password
from services.reviewer.oidc import OidcSignIn, SignInFailed
from services.reviewer.pages import _local
from services.reviewer.sessions import csrf_valid, same_secret
from services.store.records import ReviewerSession

ISSUER = "https://idp.example"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/ui/tasks/arq_1", "/ui/tasks/arq_1"), (None, "/ui/"), ("https://evil.example/ui/", "/ui/"), ("//evil.example/ui/", "/ui/"),
        ("/ui/\\evil", "/ui/"), ("/admin/v1/entities", "/ui/"), ("/ui//evil.example", "/ui//evil.example"),
    ],
)
def test_after_sign_in_only_a_path_of_this_ui_is_followed(given: str | None, kept: str) -> None:
    assert _local(given) == kept
    assert not kept.startswith("//")


def test_csrf_tokens_compare_whole_and_need_a_session() -> None:
    session = ReviewerSession(session_digest="d", csrf_token="token-1", created_at=datetime.now(UTC), expires_at=datetime.now(UTC))
    assert csrf_valid(session, "token-1")
    assert not csrf_valid(session, "token-")
    assert not csrf_valid(session, None) and not csrf_valid(None, "token-1")
    assert not same_secret("x", "")


def test_local_accounts_verify_argon2id_hashes_and_name_nobody_on_a_miss() -> None:
    from services.config import EntityRef, ReviewerConfig

    accounts = LocalAccounts([ReviewerConfig(name="alice", entity=EntityRef(type="User", id="alice"), password_hash=hash_password("a long passphrase"))])
    assert accounts.sign_in("alice", "a long passphrase").entity_id == "alice"  # type: ignore[union-attr]
    assert accounts.sign_in("alice", "wrong") is None
    assert accounts.sign_in("mallory", "a long passphrase") is None


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[[reviewers]]\nname = "a"\nentity = { type = "User", id = "a" }\n', "set key_sha256"),
        ('[[reviewers]]\nname = "a"\nentity = { type = "User", id = "a" }\npassword_hash = "plain"\n', "argon2id"),
        ('[reviewer_ui.oidc]\nissuer = "http://idp.example"\nclient_id = "c"\n', "https"),
        ('[reviewer_ui.oidc]\nissuer = "https://idp.example"\n', "client_id"),
        ('[reviewer_ui.oidc]\nissuer = "https://idp.example"\nclient_id = "c"\nscopes = ["profile"]\n', "openid"),
        ("[reviewer_ui]\nsession_ttl = 5\n", "session_ttl"),
    ],
)
def test_configuration_of_the_ui_is_checked(tmp_path: Any, toml: str, problem: str) -> None:
    path = tmp_path / "arop.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=problem):
        load_config(path, environ={})


class _Provider:
    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
        jwks = {"keys": [self.key.as_dict(private=False)]}
        self.sign_in = OidcSignIn(OidcConfig(issuer=ISSUER, client_id="arop"), "https://arop.example/ui/login/oidc/callback")
        self.sign_in._metadata = {"issuer": ISSUER}
        self.sign_in._keys = JwksCache(jwks=jwks)

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        base = {"iss": ISSUER, "aud": "arop", "sub": "alice", "exp": now + 300, "iat": now, "nonce": "n-1"}
        return jwt.encode({"alg": "ES256", "kid": "k1"}, {**base, **claims}, self.key)

    def verify(self, token: str) -> dict[str, Any]:
        return asyncio.run(self.sign_in._verify(token, "n-1"))


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"iss": "https://other.example"}, "does not verify"), ({"aud": "someone-else"}, "does not verify"),
        ({"aud": ["arop", "other"], "azp": "other"}, "azp"), ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": int(time.time()) + 3600}, "future"), ({"nonce": "n-2"}, "nonce"), ({"nonce": None}, "nonce"),
    ],
)
def test_an_id_token_for_another_sign_in_party_or_time_is_refused(claims: dict[str, Any], why: str) -> None:
    provider = _Provider()
    assert provider.verify(provider.token())["sub"] == "alice"
    with pytest.raises(SignInFailed, match=why):
        provider.verify(provider.token(**claims))


def test_an_id_token_signed_by_another_key_or_tampered_is_refused() -> None:
    provider = _Provider()
    forged = jwt.encode({"alg": "ES256", "kid": "k1"}, {"iss": ISSUER, "aud": "arop", "nonce": "n-1"}, ECKey.generate_key("P-256"))
    with pytest.raises(SignInFailed, match="signature"):
        provider.verify(forged)
    header, payload, signature = provider.token().split(".")
    with pytest.raises(SignInFailed):
        provider.verify(f"{header}.{payload}x.{signature}")
    with pytest.raises(SignInFailed, match="does not verify"):
        provider.verify(f"{header}.{payload}.")  # no signature at all


def test_the_acting_chain_reads_client_actor_then_subject_act() -> None:
    subject = {"type": "User", "id": "alice", "properties": {"act": {"sub": "trader-7", "act": {"sub": "orchestrator"}}}}
    assert views.acting_chain(subject, {"actor": {"id": "gateway"}}) == ["gateway", "trader-7", "orchestrator"]
    assert views.acting_chain({"type": "User", "id": "bob"}, None) == []


def test_durations_offered_never_exceed_the_cap() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    choices = views.duration_choices(now, "2026-11-23T14:00:00Z")
    # The instants shown are the instants sent: a page left open grants no later than it said.
    assert [value for value, _ in choices] == ["2026-11-23T14:00:00Z", "2026-11-23T10:00:00Z", "2026-11-23T13:00:00Z"]
    assert choices[1][1] == "1 hour: until 2026-11-23 10:00 UTC"


def test_authorization_details_render_as_rows() -> None:
    rows = views.authorization_details({"authorization_details": [{"type": "payment_initiation", "actions": ["initiate"], "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]})
    assert rows == [[("Type", "payment_initiation"), ("Actions", "initiate"), ("Instructedamount", "currency: EUR; amount: 123.50")]]


def test_inbox_filters_by_template_risk_and_age() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    at = lambda hours: (now - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    tasks = [{"template": "a", "risk": "high", "created_at": at(0.5)}, {"template": "b", "risk": "low", "created_at": at(30)}]
    assert views.filtered(tasks, now, template="a", risk="", age_filter="") == tasks[:1]
    assert views.filtered(tasks, now, template="", risk="low", age_filter="") == tasks[1:]
    assert views.filtered(tasks, now, template="", risk="", age_filter="older") == tasks[1:]
    assert views.filtered(tasks, now, template="", risk="", age_filter="1h") == tasks[:1]
    assert views.counts(tasks, "risk") == {"high": 1, "low": 1}
