"""Configuration: TOML plus AROP_* overrides, errors that name the bad key."""

from __future__ import annotations

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
        ({"AROP_CALLERS": '[{name = "x"}]'}, "callers[0].key_sha256: required key is missing"),
        ({"AROP_CALLERS": '[{name = "x", key_sha256 = "short"}]'}, "callers[0].key_sha256: must be 64 lowercase hex characters"),
        ({"AROP_CALLERS": f'[{{name = "x", key_sha256 = "{"a" * 64}", scopes = ["root"]}}]'}, "callers[0].scopes[0]: Invalid enum value 'root'"),
        ({"AROP_SERVER__": "1"}, "AROP_SERVER__: malformed override (use AROP_SECTION__KEY)"),
    ],
)
def test_errors_name_the_bad_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ=environ)
    assert str(error.value) == message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad, environ={})
