"""Configuration: one TOML file plus `AROP_*` environment overrides, typed with msgspec.

Environment overrides use `__` between levels: `AROP_SERVER__PORT=9000`,
`AROP_STORE__URL=postgresql://…`. Values are read as TOML values when they parse as one
(`9000`, `true`, `["a"]`), otherwise as strings. Unknown keys are errors, so typos never pass
silently, and every error names the key it is about.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

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


class CallerConfig(_Section):
    """A PEP, AS or operator allowed to call the APIs with a static API key (stored hashed)."""

    name: str
    key_sha256: str
    scopes: list[Literal["evaluate", "explain", "admin"]] = msgspec.field(default_factory=lambda: ["evaluate"])


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
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)

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
    for index, caller in enumerate(config.callers):
        if not re.fullmatch(r"[0-9a-f]{64}", caller.key_sha256):
            raise ConfigError(f"callers[{index}].key_sha256: must be 64 lowercase hex characters")
