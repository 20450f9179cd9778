"""Configuration: TOML plus AROP_* overrides, errors that name the bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.config import ConfigError, load_config


def test_defaults_without_file_or_environment() -> None:
    config = load_config(environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.server.base_url() == "http://127.0.0.1:8080"
    assert config.store.url == "sqlite:///arop.db"
    assert config.bundle_path().name == "todo"


def test_file_then_environment_overrides(tmp_path: Path) -> None:
    file = tmp_path / "arop.toml"
    file.write_text('[server]\nport = 9000\npublic_url = "https://pdp.example.net/"\n[pdp]\nmax_batch_items = 5\n')
    config = load_config(file, environ={"AROP_SERVER__PORT": "9100", "AROP_PDP__EXPOSE_POLICY_IDS": "true"})
    assert config.server.port == 9100
    assert config.pdp.max_batch_items == 5
    assert config.pdp.expose_policy_ids is True
    assert config.server.base_url() == "https://pdp.example.net"


def test_environment_names_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "arop.toml"
    file.write_text("[server]\nworkers = 4\n")
    assert load_config(environ={"AROP_CONFIG": str(file)}).server.workers == 4


def test_list_override_is_read_as_toml() -> None:
    digest = "a" * 64
    config = load_config(environ={"AROP_CALLERS": f'[{{name = "pep", key_sha256 = "{digest}", scopes = ["evaluate", "admin"]}}]'})
    assert config.callers[0].scopes == ["evaluate", "admin"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AROP_SERVER__PORT": "abc"}, "server.port: Expected `int`, got `str`"),
        ({"AROP_SERVER__PROT": "1"}, "server.prot: unknown key"),
        ({"AROP_NOPE": "1"}, "nope: unknown key"),
        ({"AROP_SERVER__PORT": "70000"}, "server.port: must be between 1 and 65535"),
        ({"AROP_STORE__URL": "mysql://x"}, "store.url: must start with sqlite:// or postgresql://"),
        ({"AROP_SERVER__PUBLIC_URL": "https://x/?q=1"}, "server.public_url: must be an absolute http(s) URL without query or fragment"),
        ({"AROP_CALLERS": '[{name = "x"}]'}, "callers[0]: caller 'x': give exactly one credential, key_sha256, jwt or mtls (none is configured)"),
        ({"AROP_CALLERS": '[{name = "x", key_sha256 = "short"}]'}, "callers[0].key_sha256: must be 64 lowercase hex characters"),
        ({"AROP_CALLERS": f'[{{name = "x", key_sha256 = "{"a" * 64}", scopes = ["root"]}}]'}, "callers[0].scopes[0]: Invalid enum value 'root'"),
        ({"AROP_SERVER__": "1"}, "AROP_SERVER__: malformed override (use AROP_SECTION__KEY)"),
    ],
)
def test_errors_name_the_bad_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ=environ)
    assert str(error.value) == message


CERT = 'mtls = {x5t_s256 = "' + "A" * 43 + '"}'


def jwt(**members: object) -> str:
    """A caller's `jwt` inline table: a valid one, with `members` replaced or added."""
    values: dict[str, object] = {"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks", "audience": "https://pdp.example", "subject": "as"}
    values.update(members)
    return "jwt = {" + ", ".join(f"{name} = {json.dumps(value)}" for name, value in values.items()) + "}"


def test_callers_with_jwt_or_mtls_credentials() -> None:
    config = load_config(environ={
        "AROP_SERVER__TRUSTED_PROXIES": '["127.0.0.1", "10.0.0.0/8"]',
        "AROP_CALLERS": f'[{{name = "as", {jwt()}, scopes = ["oauth"]}}, {{name = "pep", {CERT}}}]',
    })
    as_caller, pep = config.callers
    assert as_caller.jwt is not None and as_caller.jwt.subject == "as"
    assert "RS256" in as_caller.jwt.algorithms and "HS256" not in as_caller.jwt.algorithms
    assert pep.mtls is not None and pep.key_sha256 == ""


ALGORITHMS = "ES256, ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA"


@pytest.mark.parametrize(
    ("callers", "message"),
    [
        (f'[{{name = "x", key_sha256 = "{"a" * 64}", {jwt()}}}]', "callers[0]: caller 'x': give exactly one credential, key_sha256, jwt or mtls (not key_sha256 and jwt together)"),
        (f'[{{name = "x", {jwt()}, {CERT}}}]', "callers[0]: caller 'x': give exactly one credential, key_sha256, jwt or mtls (not jwt and mtls together)"),
        (f'[{{name = "x", {jwt(jwks_uri="http://idp.example/jwks")}}}]', "callers[0].jwt: jwks_uri: must be an https URL"),
        (f'[{{name = "x", {jwt(algorithms=["HS256", "ES256"])}}}]', f"callers[0].jwt: algorithms: one or more of {ALGORITHMS}, not HS256"),
        (f'[{{name = "x", {jwt(algorithms=["none"])}}}]', f"callers[0].jwt: algorithms: one or more of {ALGORITHMS}, not none"),
        (f'[{{name = "x", {jwt(algorithms=[])}}}]', f"callers[0].jwt: algorithms: one or more of {ALGORITHMS}"),
        (f'[{{name = "x", {jwt(subject="")}}}]', "callers[0].jwt: subject: must not be empty"),
        (f'[{{name = "x", {jwt()}}}, {{name = "y", {jwt()}}}]', "callers[1].jwt: another caller is subject 'as' of 'https://idp.example'"),
        (f'[{{name = "x", {jwt()}}}, {{name = "y", {jwt(subject="y", jwks_uri="https://idp.example/other")}}}]',
         "callers[1].jwt: callers of issuer 'https://idp.example' must name the same jwks_uri and ca_file"),
        ('[{name = "x", mtls = {x5t_s256 = "abc"}}]', "callers[0].mtls: x5t_s256: must be the unpadded base64url SHA-256 of the certificate (43 characters)"),
        (f'[{{name = "x", {CERT}}}]', "callers[0].mtls: set server.trusted_proxies, the TLS-terminating proxies that forward client certificates (RFC 9440 Client-Cert)"),
    ],
)
def test_caller_credential_errors(callers: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"AROP_CALLERS": callers})
    assert str(error.value) == message


def test_trusted_proxies_are_addresses_or_cidrs() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"AROP_SERVER__TRUSTED_PROXIES": '["proxy.internal"]'})
    assert str(error.value) == "server.trusted_proxies[0]: 'proxy.internal' is not an address or CIDR"


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad, environ={})


# -- [oauth.client_challenge] (issue 5) ----------------------------------------------------------

_JWKS = '{ keys = [{ kty = "EC", crv = "P-256", x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }] }'


def _challenge_config(tmp_path: Path, verifiers: str, oauth: str = 'issuer = "https://as.example"\n') -> Path:
    file = tmp_path / "arop.toml"
    file.write_text(f"[oauth]\n{oauth}[oauth.client_challenge]\nsession_ttl = 60\n{verifiers}")
    return file


def test_client_challenge_verifiers_are_read(tmp_path: Path) -> None:
    verifiers = (
        f'[[oauth.client_challenge.verifiers]]\ntype = "mandate"\nissuers = [{{ issuer = "https://wallet.example", jwks = {_JWKS} }}]\n'
        '[[oauth.client_challenge.verifiers]]\ntype = "broker_licence"\nfactory = "tests.oauth.licence_verifier:BrokerLicenceVerifier"\n'
        'issuers = [{ issuer = "https://regulator.example", jwks_uri = "https://regulator.example/jwks" }]\noptions = { parameter = "licence" }\n'
    )
    section = load_config(_challenge_config(tmp_path, verifiers), environ={}).oauth.client_challenge
    assert section.session_ttl == 60 and [v.type for v in section.verifiers] == ["mandate", "broker_licence"]
    assert section.verifiers[1].options == {"parameter": "licence"}


@pytest.mark.parametrize(
    ("verifiers", "oauth", "message"),
    [
        ('[[oauth.client_challenge.verifiers]]\ntype = "mandate"\nissuers = [{ issuer = "https://w.example", jwks_uri = "https://w.example/j" }]\n', "", "set oauth.issuer"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "mandate"\n', 'issuer = "https://as.example"\n', "name the issuers"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "vp"\nissuers = [{ issuer = "https://w.example", jwks_uri = "https://w.example/j" }]\n', 'issuer = "https://as.example"\n', "factory: required"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "mandate"\nfactory = "x:y"\nissuers = [{ issuer = "https://w.example", jwks_uri = "https://w.example/j" }]\n', 'issuer = "https://as.example"\n', "factory: required"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "vp"\nfactory = "not a path"\nissuers = [{ issuer = "https://w.example", jwks_uri = "https://w.example/j" }]\n', 'issuer = "https://as.example"\n', "package.module:callable"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "mandate"\nissuers = [{ issuer = "https://w.example", jwks_uri = "http://w.example/j" }]\n', 'issuer = "https://as.example"\n', "must be https"),
        ('[[oauth.client_challenge.verifiers]]\ntype = "mandate"\nissuers = [{ issuer = "https://w.example", jwks_uri = "https://w.example/j" }]\n' * 2, 'issuer = "https://as.example"\n', "each type once"),
    ],
)
def test_client_challenge_errors_name_the_bad_key(tmp_path: Path, verifiers: str, oauth: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_challenge_config(tmp_path, verifiers, oauth), environ={})
