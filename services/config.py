"""Configuration: one TOML file plus `AROP_*` environment overrides, typed with msgspec.

Environment overrides use `__` between levels: `AROP_SERVER__PORT=9000`,
`AROP_STORE__URL=postgresql://…`. Values are read as TOML values when they parse as one
(`9000`, `true`, `["a"]`), otherwise as strings. Unknown keys are errors, so typos never pass
silently, and every error names the key it is about.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from services.oauth.issuer_keys import TrustedIssuer

ENV_PREFIX = "AROP_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration value is missing, malformed or of the wrong type; the message names it."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    # The PDP identifier and base of every absolute URL the service publishes (AZ-31, AZ-34).
    # Empty: http://{host}:{port}. Never derived from the Host header.
    public_url: str = ""
    max_body_bytes: int = 1_048_576
    max_json_depth: int = 32
    # TLS-terminating proxies (addresses or CIDRs) whose `Client-Cert` header (RFC 9440) is
    # believed: the client certificate `mtls` callers are recognized by. From any other peer
    # the header is ignored. The proxy must drop a `Client-Cert` its clients send.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class StoreConfig(_Section):
    # sqlite:///relative.db, sqlite:////abs/path.db, or postgresql://user:pass@host:port/db
    url: str = "sqlite:///arop.db"
    pool_min: int = 1
    pool_max: int = 10


class RedisConfig(_Section):
    # Optional: empty means one process does in memory what Redis would share between replicas.
    url: str = ""


class PolicyConfig(_Section):
    # A bundle directory (schema.cedarschema, *.cedar, entities.json, tests/). Empty: examples/todo.
    bundle: str = ""
    # Seconds between checks of the bundle directory and the stored entities for changes.
    reload_interval: float = 2.0


class PdpConfig(_Section):
    max_batch_items: int = 1000
    max_search_limit: int = 1000
    # Name the determining policies of a denial to every caller. Off: only to callers with the
    # `explain` scope (and to anonymous loopback callers of a development setup): policy ids are
    # administrator information (ARAP AR-102).
    expose_policy_ids: bool = False
    # Publish `signed_metadata` (an ES256 JWT over the metadata, AZ-35) in the discovery document.
    signed_metadata: bool = False
    metadata_max_age: int = 300


CallerScope = Literal["evaluate", "explain", "request", "cancel", "admin", "oauth"]


class SubjectPattern(_Section):
    """A subject a caller may act for: every subject of `type`, or the one with `id` too."""

    type: str
    id: str | None = None


# Asymmetric JWS algorithms only: never `none`, never HMAC (a public key must not become a secret).
JWT_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")
_X5T_S256 = re.compile(r"[A-Za-z0-9_-]{43}")


class JwtCredential(_Section):
    """A caller presenting bearer JWTs (e.g. OAuth client-credentials access tokens) from
    `issuer`, verified with the keys at its `jwks_uri` (https; `ca_file`: an extra CA bundle for
    a private PKI). The token must name `audience` in `aud` and this caller in `sub`, and carry
    `exp`."""

    issuer: str
    jwks_uri: str
    audience: str
    subject: str
    algorithms: list[str] = msgspec.field(default_factory=lambda: list(JWT_ALGORITHMS))
    ca_file: str = ""

    def __post_init__(self) -> None:
        for name in ("issuer", "audience", "subject"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if not re.match(r"^https://[^/?#]+", self.jwks_uri):
            raise ValueError("jwks_uri: must be an https URL")
        unknown = [alg for alg in self.algorithms if alg not in JWT_ALGORITHMS]
        if unknown or not self.algorithms:
            refused = f", not {', '.join(unknown)}" if unknown else ""
            raise ValueError(f"algorithms: one or more of {', '.join(JWT_ALGORITHMS)}{refused}")


class MtlsCredential(_Section):
    """A caller recognized by its TLS client certificate, as a trusted proxy forwards it
    (`server.trusted_proxies`, RFC 9440 `Client-Cert`): `x5t_s256` is the base64url SHA-256 of
    the certificate's DER, as in RFC 8705's `x5t#S256`."""

    x5t_s256: str

    def __post_init__(self) -> None:
        if not _X5T_S256.fullmatch(self.x5t_s256):
            raise ValueError("x5t_s256: must be the unpadded base64url SHA-256 of the certificate (43 characters)")


class CallerConfig(_Section):
    """A PEP, AS or operator allowed to call the APIs, with exactly one credential: a static API
    key (`key_sha256`, stored hashed), bearer JWTs from an issuer (`jwt`), or a TLS client
    certificate (`mtls`).

    Scopes: `evaluate` (AuthZEN APIs), `explain` (policy ids in denials), `request` (submit
    access requests and read their status), `cancel` (cancel them: a separate right, AR-91),
    `admin` (admin API), `oauth` (the AS-facing sidecar API: an Authorization Server; the
    sidecar submits, reads and cancels the access requests behind its handles as this caller). `subjects` limits the subjects whose access requests the caller may
    submit, read and cancel (AR-90, AR-91); empty: any subject."""

    name: str
    key_sha256: str = ""
    jwt: JwtCredential | None = None
    mtls: MtlsCredential | None = None
    scopes: list[CallerScope] = msgspec.field(default_factory=lambda: ["evaluate"])
    subjects: list[SubjectPattern] = msgspec.field(default_factory=list)
    # Completion callbacks (ARAP §13): the endpoints registered for this caller (exact URIs, or
    # prefixes ending in "/"), and the HMAC key the service signs its callbacks with (AR-78).
    callback_urls: list[str] = msgspec.field(default_factory=list)
    callback_secret: str = ""
    # The caller authenticates the actors it names in `client.actor` itself (e.g. an AS that
    # validated an RFC 8693 token with `act` claims). Others may not claim actors (AR-92).
    vouches_for_actors: bool = False

    def __post_init__(self) -> None:
        given = [kind for kind, value in (("key_sha256", self.key_sha256), ("jwt", self.jwt), ("mtls", self.mtls)) if value]
        if len(given) != 1:
            what = f"not {' and '.join(given)} together" if given else "none is configured"
            raise ValueError(f"caller {self.name!r}: give exactly one credential, key_sha256, jwt or mtls ({what})")


class EntityRef(_Section):
    type: str
    id: str


class ReviewerConfig(_Section):
    """A person who reviews access requests, as the entity workflows select approvers by
    (`resource.owner`, a group, ids). The reviewer API takes their API key (`key_sha256`); the
    web UI signs them in by `name` and password (`password_hash`, argon2id). At least one."""

    name: str
    entity: EntityRef
    key_sha256: str = ""
    password_hash: str = ""


class OidcConfig(_Section):
    """Sign-in to the reviewer UI through an OpenID Connect provider (authorization code flow
    with PKCE). The person's entity is `entity_type` with the id from `entity_claim` of the
    verified ID token: the entity workflows select approvers by."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    # Empty: the server's base URL + /ui/login/oidc/callback (register that at the provider).
    redirect_uri: str = ""
    scopes: list[str] = msgspec.field(default_factory=lambda: ["openid", "profile", "email"])
    entity_type: str = "User"
    # The claim naming the person's entity id. `sub` is the one the provider guarantees unique
    # and stable; name another (e.g. preferred_username) only where the provider makes it so.
    entity_claim: str = "sub"
    # The button on the sign-in page: "Sign in with <display_name>".
    display_name: str = "single sign-on"
    # PEM file of the CA to trust for the provider's TLS certificate (empty: the system's).
    ca_file: str = ""


class ReviewerUIConfig(_Section):
    """The reviewer web UI at /ui (services/reviewer)."""

    enabled: bool = True
    # Seconds a sign-in lasts, from sign-in (not sliding: a stolen cookie ages out).
    session_ttl: int = 8 * 3600
    # The session cookie is `Secure` and `__Host-` prefixed. Browsers accept secure cookies
    # from http://127.0.0.1 and http://localhost, so only a plain-http deployment on another
    # host name needs this off (and should not exist).
    cookie_secure: bool = True
    # Seconds between the checks for task changes that live inbox updates wait on (per worker).
    live_interval: float = 1.0
    # Who sees every task, cancels, and reads the audit verification: entities like reviewers'.
    admins: list[EntityRef] = msgspec.field(default_factory=list)
    oidc: OidcConfig = msgspec.field(default_factory=OidcConfig)


class AccessRequestConfig(_Section):
    """The Access Request Service (ARAP) and the requestable denials the PDP emits."""

    # Denial binding material (AR-9, AR-10): a PDP-signed `binding_token`, an `evaluation_id`
    # recorded in the store, or both. The id is returned in every requestable denial.
    binding: Literal["both", "token", "evaluation_id"] = "both"
    # The token binds by inline claims (RECOMMENDED) or by `binding_hash` (AR-25).
    binding_hash: bool = False
    # Seconds a requestable denial may be submitted (`access_request.expires_at`).
    hint_ttl: int = 600
    # Seconds a binding_token is valid (its `exp` is never later than the hint's expiry).
    token_lifetime: int = 300
    # Clock-skew tolerance of freshness checks, seconds (AR-14: typical 30, above 60 refused).
    clock_skew: int = 30
    # The ARS identifier: `aud` of binding tokens, `iss` of approval states (D-ARAP-3).
    # Empty: the access_request_endpoint URL.
    identifier: str = ""
    # `Retry-After` of a pending task's status, seconds.
    retry_after: int = 5
    # Seconds a terminal task stays retrievable (and its Idempotency-Key remembered, AR-48).
    retention: int = 86_400
    # Callback destinations exempt from the internal-address ban (CIDRs, AR-77), and an extra
    # CA bundle to trust for callback TLS (private PKI).
    callback_allow_networks: list[str] = msgspec.field(default_factory=list)
    callback_ca_file: str = ""
    callback_max_attempts: int = 8
    callback_timeout: float = 10.0
    # Seconds between runs of the background worker (task expiry, callbacks, purges).
    worker_interval: float = 1.0


RetryTransport = Literal["completion_mode=deferred", "ciba"]


class EvidenceVerifierConfig(_Section):
    """One client evidence type the sidecar verifies (`[[oauth.client_challenge.verifiers]]`,
    TX-56): the requirement `type` policies name in `@challenge`, the `issuers` trusted to sign
    its artifacts (attesters; users' wallets or IdPs: `issuer`, and `jwks_uri` or an inline
    `jwks`), and `options` for its verifier. The built-in types are `client_attestation`
    (option `max_pop_age`, seconds) and `mandate`; any other type names the `factory` that
    builds its verifier, "package.module:callable", called as `factory(resolve_key, **options)`
    (the extension point: profiles.client_challenge.evidence.EvidenceVerifier)."""

    type: str
    issuers: list[TrustedIssuer] = msgspec.field(default_factory=list)
    factory: str = ""
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ClientChallengeConfig(_Section):
    """The OAuth Client Challenge (oauth-transports.md §5, docs/client-challenge.md): the
    evidence types this AS can ask a client for, and how long a challenge may be answered."""

    # Seconds a `challenge_session` may be answered in (TX-52: the response's `expires_in`).
    session_ttl: int = 120
    verifiers: list[EvidenceVerifierConfig] = msgspec.field(default_factory=list)


class OAuthConfig(_Section):
    """The AS-facing sidecar (AROP, services/oauth): lifetimes of what it tells the AS to mint
    and of the continuation handles it issues."""

    # The Authorization Server's identifier (its `issuer`): the `aud` a transaction challenge
    # must name (TX-42). Empty: the AS has not been described yet (txn is then refused).
    issuer: str = ""
    # The transaction challenge binding (spec/arop.md §11.3, D-AROP-23): the resource servers
    # whose challenges this AS accepts (`[[oauth.resource_servers]]`: `issuer`, and `jwks_uri`
    # (their `txn_challenge_jwks_uri`) or an inline `jwks`); and the PEP placement: "resource" (the RS is
    # the PEP, its verified challenge is the requestable denial, OP-7) or "both" (the AS's own
    # policy is evaluated too: a non-requestable denial there refuses the challenge, OP-8).
    resource_servers: list[TrustedIssuer] = msgspec.field(default_factory=list)
    txn_placement: Literal["resource", "both"] = "resource"
    # The CA bundle every `jwks_uri` fetch of this section is verified with (resource servers,
    # attesters, mandate issuers); empty: the system's.
    jwks_ca_file: str = ""
    # Seconds an access token may live at most (OP-34's policy ttl; approvals bound it further).
    access_token_ttl: int = 900
    # Seconds a refresh may be made after issuance; 0: no refresh tokens (OP-36).
    refresh_token_ttl: int = 0
    # The shortest lifetime worth issuing, seconds (OP-34: below it the answer is access_denied).
    min_token_lifetime: int = 1
    # The polling interval first handed out, seconds (OP-29; slow_down adds 5 s, OP-28).
    interval: int = 5
    # Seconds a continuation handle lives at most; its ARS task's expiry may end it sooner (D-5).
    handle_ttl: int = 3600
    # DESIGN.md §5 / D-AROP-4: tell a client that did not opt in that approval is obtainable,
    # and through which transports it may retry (add "ciba" where the AS serves a backchannel
    # authentication endpoint). Off, or an empty list: the plain OP-14 error.
    remediation: bool = True
    retry_with: list[RetryTransport] = msgspec.field(default_factory=lambda: ["completion_mode=deferred"])
    # CIBA push mode (OP-51, D-AROP-n "CIBA push goes through the AS"): the AS endpoint the
    # sidecar POSTs a resolved push request to, HMAC-signed like ARAP callbacks with the deciding
    # AS caller's `callback_secret`; the AS mints and delivers the tokens. HTTPS, or http on a
    # loopback address. Empty: push clients are refused (unauthorized_client).
    push_endpoint: str = ""
    client_challenge: ClientChallengeConfig = msgspec.field(default_factory=ClientChallengeConfig)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # One JSON line per HTTP request. Off by default: it costs throughput on the decision path.
    access_log: bool = False


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    pdp: PdpConfig = msgspec.field(default_factory=PdpConfig)
    callers: list[CallerConfig] = msgspec.field(default_factory=list)
    reviewers: list[ReviewerConfig] = msgspec.field(default_factory=list)
    reviewer_ui: ReviewerUIConfig = msgspec.field(default_factory=ReviewerUIConfig)
    access_requests: AccessRequestConfig = msgspec.field(default_factory=AccessRequestConfig)
    oauth: OAuthConfig = msgspec.field(default_factory=OAuthConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)

    def access_request_endpoint(self) -> str:
        return f"{self.server.base_url()}/access/v1/requests"

    def ars_identifier(self) -> str:
        """`aud` of binding tokens and `iss` of approval states (D-ARAP-3)."""
        return self.access_requests.identifier or self.access_request_endpoint()

    def bundle_path(self) -> Path:
        if self.policy.bundle:
            return Path(self.policy.bundle).expanduser().resolve()
        return REPO_ROOT / "examples" / "todo"


_PATH_IN_ERROR = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _describe(error: msgspec.ValidationError) -> str:
    text = str(error)
    match = _PATH_IN_ERROR.search(text)
    key = match.group("path").lstrip(".") if match else ""
    message = text[: match.start()] if match else text
    field = re.match(r"Object (contains unknown|missing required) field `(?P<name>[^`]+)`", message)
    if field:
        what = "unknown key" if field.group(1) == "contains unknown" else "required key is missing"
        return f"{key + '.' if key else ''}{field.group('name')}: {what}"
    return f"{key}: {message}" if key else message


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "AROP_CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"{name}: malformed override (use AROP_SECTION__KEY)")
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} is not a table")
            node = child
        node[path[-1]] = _env_value(raw)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (if any), apply `AROP_*` overrides, validate, and return the Config."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("AROP_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    _apply_env(data, environ)
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    _check(config)
    return config


def _check(config: Config) -> None:
    if not 1 <= config.server.port <= 65535:
        raise ConfigError("server.port: must be between 1 and 65535")
    if config.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if config.server.public_url and not re.match(r"^https?://[^/?#]+(/[^?#]*)?$", config.server.public_url):
        raise ConfigError("server.public_url: must be an absolute http(s) URL without query or fragment")
    if not config.store.url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise ConfigError("store.url: must start with sqlite:// or postgresql://")
    for section, entries in (("callers", config.callers), ("reviewers", config.reviewers)):
        for index, entry in enumerate(entries):
            if entry.key_sha256 and not re.fullmatch(r"[0-9a-f]{64}", entry.key_sha256):
                raise ConfigError(f"{section}[{index}].key_sha256: must be 64 lowercase hex characters")
    _check_reviewers(config)
    _check_callers(config)
    ars = config.access_requests
    if not 0 <= ars.clock_skew <= 60:
        raise ConfigError("access_requests.clock_skew: must be between 0 and 60 seconds (AR-14)")
    for key in ("hint_ttl", "token_lifetime", "retention", "callback_max_attempts"):
        if getattr(ars, key) < 1:
            raise ConfigError(f"access_requests.{key}: must be at least 1")
    oauth = config.oauth
    for key in ("access_token_ttl", "min_token_lifetime", "interval", "handle_ttl"):
        if getattr(oauth, key) < 1:
            raise ConfigError(f"oauth.{key}: must be at least 1")
    if oauth.min_token_lifetime > oauth.access_token_ttl:
        # OP-15, OP-34: no token could ever be issued; standing access would be answered with a
        # synchronous access_denied, a code reserved for the deferred path.
        raise ConfigError("oauth.min_token_lifetime: must not exceed oauth.access_token_ttl")
    if oauth.refresh_token_ttl < 0:
        raise ConfigError("oauth.refresh_token_ttl: must be 0 (no refresh tokens) or more")
    if oauth.issuer and not re.match(r"^https?://[^/?#]+(/[^?#]*)?$", oauth.issuer):
        raise ConfigError("oauth.issuer: must be an absolute http(s) URL without query or fragment")
    issuers = [server.issuer for server in oauth.resource_servers]
    if len(set(issuers)) != len(issuers):
        raise ConfigError("oauth.resource_servers: each issuer once")
    if oauth.resource_servers and not oauth.issuer:
        raise ConfigError("oauth.resource_servers: set oauth.issuer, the aud their challenges name (TX-42)")
    _check_client_challenge(oauth)
    for index, network in enumerate(ars.callback_allow_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"access_requests.callback_allow_networks[{index}]: {network!r} is not a CIDR") from None


def _check_reviewers(config: Config) -> None:
    """Every reviewer can sign in somewhere, once by name; the UI's OIDC client is complete."""
    names = [reviewer.name for reviewer in config.reviewers]
    if len(set(names)) != len(names):
        raise ConfigError("reviewers: each name once (it is the sign-in name)")
    for index, reviewer in enumerate(config.reviewers):
        if not reviewer.key_sha256 and not reviewer.password_hash:
            raise ConfigError(f"reviewers[{index}]: set key_sha256 (reviewer API) or password_hash (web UI), or both")
        if reviewer.password_hash and not reviewer.password_hash.startswith("$argon2id$"):
            raise ConfigError(f"reviewers[{index}].password_hash: must be an argon2id hash (arop reviewers new-password)")
    ui = config.reviewer_ui
    if ui.session_ttl < 60:
        raise ConfigError("reviewer_ui.session_ttl: must be at least 60 seconds")
    if not 0.1 <= ui.live_interval <= 60:
        raise ConfigError("reviewer_ui.live_interval: must be between 0.1 and 60 seconds")
    oidc = ui.oidc
    if oidc.issuer:
        if not re.match(r"^https://[^/?#]+(/[^?#]*)?$", oidc.issuer):
            raise ConfigError("reviewer_ui.oidc.issuer: must be an absolute https URL without query or fragment")
        if not oidc.client_id:
            raise ConfigError("reviewer_ui.oidc.client_id: required with reviewer_ui.oidc.issuer")
        if "openid" not in oidc.scopes:
            raise ConfigError("reviewer_ui.oidc.scopes: must include openid")


def _check_client_challenge(oauth: OAuthConfig) -> None:
    """Each evidence type once, from trusted issuers, with a verifier; evidence names this AS."""
    section = oauth.client_challenge
    if section.session_ttl < 1:
        raise ConfigError("oauth.client_challenge.session_ttl: must be at least 1")
    if section.verifiers and not oauth.issuer:
        raise ConfigError("oauth.client_challenge.verifiers: set oauth.issuer, the aud client evidence names")
    seen: set[str] = set()
    for index, verifier in enumerate(section.verifiers):
        where = f"oauth.client_challenge.verifiers[{index}]"
        if not verifier.type or verifier.type in seen:
            raise ConfigError(f"{where}.type: each type once, not empty")
        seen.add(verifier.type)
        if not verifier.issuers:
            raise ConfigError(f"{where}.issuers: name the issuers trusted to sign {verifier.type} evidence")
        built_in = verifier.type in ("client_attestation", "mandate")
        if built_in == bool(verifier.factory):
            raise ConfigError(f"{where}.factory: required exactly for types other than client_attestation and mandate")
        if verifier.factory and not re.fullmatch(r"[\w.]+:[\w.]+", verifier.factory):
            raise ConfigError(f"{where}.factory: must be package.module:callable")


def _check_callers(config: Config) -> None:
    """Callers' JWT identities and certificates are unambiguous; mTLS needs a trusted proxy."""
    for index, network in enumerate(config.server.trusted_proxies):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies[{index}]: {network!r} is not an address or CIDR") from None
    jwt_identities: set[tuple[str, str]] = set()
    key_sets: dict[str, tuple[str, str]] = {}
    thumbprints: set[str] = set()
    for index, caller in enumerate(config.callers):
        if caller.jwt is not None:
            jwt = caller.jwt
            if (jwt.issuer, jwt.subject) in jwt_identities:
                raise ConfigError(f"callers[{index}].jwt: another caller is subject {jwt.subject!r} of {jwt.issuer!r}")
            jwt_identities.add((jwt.issuer, jwt.subject))
            if key_sets.setdefault(jwt.issuer, (jwt.jwks_uri, jwt.ca_file)) != (jwt.jwks_uri, jwt.ca_file):
                raise ConfigError(f"callers[{index}].jwt: callers of issuer {jwt.issuer!r} must name the same jwks_uri and ca_file")
        if caller.mtls is not None:
            if not config.server.trusted_proxies:
                raise ConfigError(
                    f"callers[{index}].mtls: set server.trusted_proxies, the TLS-terminating proxies that forward "
                    "client certificates (RFC 9440 Client-Cert)"
                )
            if caller.mtls.x5t_s256 in thumbprints:
                raise ConfigError(f"callers[{index}].mtls: another caller has this certificate")
            thumbprints.add(caller.mtls.x5t_s256)
