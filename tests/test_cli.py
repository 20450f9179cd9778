"""The `arop` command line: policy tooling, entity import, schema export, refusing unsafe binds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.schemas import rendered

ROOT = Path(__file__).resolve().parents[1]
TODO = ROOT / "examples" / "todo"


def arop(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AROP_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=environment, timeout=60)


def test_policy_check_ok() -> None:
    result = arop("policy", "check", str(TODO))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 6 policies")


def test_policy_check_reports_file_and_line(tmp_path: Path) -> None:
    bundle = tmp_path / "todo"
    shutil.copytree(TODO, bundle)
    policies = bundle / "policies.cedar"
    policies.write_text(policies.read_text() + '\npermit (principal, action == Action::"can_fly", resource);\n')
    result = arop("policy", "check", str(bundle))
    assert result.returncode == 1
    line = len(policies.read_text().splitlines())
    assert f"policies.cedar:{line}: " in result.stderr and "can_fly" in result.stderr


@pytest.mark.parametrize(("bundle", "cases"), [("todo", 45), ("agents", 15)])
def test_policy_test_passes_on_every_example(bundle: str, cases: int) -> None:
    result = arop("policy", "test", str(ROOT / "examples" / bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"^{cases} passed, 0 failed$", result.stdout, re.MULTILINE)


def test_policy_test_fails_with_a_diff(tmp_path: Path) -> None:
    bundle = tmp_path / "todo"
    shutil.copytree(TODO, bundle)
    suite = json.loads((bundle / "tests" / "interop.json").read_text())
    suite["cases"][0]["expected"] = not suite["cases"][0]["expected"]
    (bundle / "tests" / "interop.json").write_text(json.dumps(suite))
    result = arop("policy", "test", str(bundle))
    assert result.returncode == 1
    assert "FAIL  tests/interop.json: " in result.stdout and "44 passed, 1 failed" in result.stdout


def test_policy_test_without_cases_fails(tmp_path: Path) -> None:
    bundle = tmp_path / "todo"
    shutil.copytree(TODO, bundle)
    shutil.rmtree(bundle / "tests")
    assert arop("policy", "test", str(bundle)).returncode == 1


def test_entities_import_then_migrate_is_idempotent(tmp_path: Path) -> None:
    env = {"AROP_STORE__URL": f"sqlite:///{tmp_path / 'arop.db'}"}
    file = tmp_path / "entities.json"
    file.write_text(json.dumps([{"type": "user", "id": "new", "properties": {"email": "new@example.com"}, "parents": [{"type": "Role", "id": "viewer"}]}]))
    result = arop("entities", "import", str(file), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("imported 1 entities (revision 1)")
    assert arop("migrate", env=env).stdout.strip() == "the store is up to date"


def test_entities_import_rejects_bad_data(tmp_path: Path) -> None:
    env = {"AROP_STORE__URL": f"sqlite:///{tmp_path / 'arop.db'}"}
    file = tmp_path / "entities.json"
    file.write_text(json.dumps([{"type": "bad type", "id": "x"}, {"type": "user", "id": "y", "properties": {"f": 0.123456}}]))
    result = arop("entities", "import", str(file), env=env)
    assert result.returncode == 2
    assert "'bad type' is not a valid Cedar entity type name" in result.stderr and "[1].properties.f" in result.stderr


def test_serve_refuses_public_bind_without_callers() -> None:
    result = arop("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without caller credentials" in result.stderr


@pytest.mark.parametrize(
    "credential",
    [
        'jwt = { issuer = "https://idp.example", jwks_uri = "https://idp.example/jwks", audience = "https://pdp.example", subject = "as" }',
        'mtls = { x5t_s256 = "' + "A" * 43 + '" }',
    ],
)
def test_serve_counts_jwt_and_mtls_callers_as_caller_credentials(tmp_path: Path, credential: str) -> None:
    """DESIGN.md §3: past the caller check (the bundle, checked next, is missing on purpose)."""
    config = tmp_path / "arop.toml"
    config.write_text(f'[server]\ntrusted_proxies = ["10.0.0.1"]\n\n[[callers]]\nname = "as"\n{credential}\n')
    result = arop("serve", "--host", "0.0.0.0", "--port", "1", "--config", str(config), "--bundle", str(tmp_path / "absent"), cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to listen" not in result.stderr and "bundle" in result.stderr, result.stderr


def test_serve_reports_configuration_errors() -> None:
    result = arop("serve", env={"AROP_SERVER__PORT": "nope"})
    assert result.returncode == 2 and "server.port" in result.stderr


def test_serve_refuses_an_evidence_verifier_it_cannot_build(tmp_path: Path) -> None:
    """Issue 5: a configured factory that does not import stops `arop serve` before any worker."""
    config = tmp_path / "arop.toml"
    config.write_text(
        '[oauth]\nissuer = "https://as.example"\n[[oauth.client_challenge.verifiers]]\ntype = "vp"\nfactory = "no_such_module:Verifier"\n'
        'issuers = [{ issuer = "https://wallet.example", jwks_uri = "https://wallet.example/jwks" }]\n'
    )
    result = arop("serve", "--port", "1", "--config", str(config), cwd=tmp_path, env={"AROP_STORE__URL": f"sqlite:///{tmp_path / 'arop.db'}"})
    assert result.returncode == 2
    assert "the vp verifier cannot be built: No module named 'no_such_module'" in result.stderr, result.stderr


def test_callers_new_key_prints_a_matching_entry() -> None:
    import hashlib

    result = arop("callers", "new-key", "--name", "gateway", "--scopes", "evaluate", "admin")
    key = re.search(r"(arop_\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    assert f'key_sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"' in result.stdout
    assert 'scopes = ["evaluate", "admin"]' in result.stdout


def test_committed_schemas_match_the_code() -> None:
    """`arop schemas export` output is committed; regenerate it when a wire type changes."""
    expected = rendered()
    committed = {p.relative_to(ROOT / "schemas").as_posix(): p.read_bytes() for p in (ROOT / "schemas").rglob("*.json")}
    assert sorted(committed) == sorted(expected), "run `arop schemas export`"
    for name, content in expected.items():
        assert committed[name] == content, f"schemas/{name} drifted: run `arop schemas export`"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    marker = re.search(r"^<!-- test-command: (.*) -->\n```sh\n(.*)\n```", readme, re.MULTILINE)
    assert marker, "README.md needs the test-command marker followed by the command"
    assert marker.group(1) == marker.group(2)
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_audit_verify_detects_an_altered_event(tmp_path: Path) -> None:
    import asyncio
    import sqlite3
    from datetime import UTC, datetime

    from services.store import AuditDraft, create_store

    url = f"sqlite:///{tmp_path / 'arop.db'}"

    async def write() -> None:
        store = create_store(url)
        await store.open()
        now = datetime.now(UTC)
        await store.append_audit([AuditDraft(at=now, kind="task.created", actor="pep", task_id="t1"), AuditDraft(at=now, kind="task.approved", actor="ann", task_id="t1")])
        await store.close()

    asyncio.run(write())
    env = {"AROP_STORE__URL": url}
    intact = arop("audit", "verify", env=env)
    assert intact.returncode == 0 and intact.stdout.strip() == "audit log intact: 2 events"
    with sqlite3.connect(tmp_path / "arop.db") as db:  # someone edits the database behind our back
        db.execute("UPDATE audit_events SET document = replace(document, 'ann', 'eve'), actor = 'eve' WHERE seq = 2")
    tampered = arop("audit", "verify", env=env)
    assert tampered.returncode == 1
    assert "seq 2" in tampered.stderr and "1 problem(s) in 2 events" in tampered.stderr


def test_design_3_every_sidecar_route_is_in_the_openapi_document() -> None:
    """The AS-facing API is documented whole in schemas/openapi.json (issue: "an OpenAPI for
    this API in schemas/")."""
    from services.app import create_app
    from services.config import load_config
    from services.schemas import OPERATIONS

    app = create_app(load_config(environ={})).app
    served = {
        (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in app.routes if route.path.startswith("/oauth/")
        for method in getattr(route, "methods", ()) if method not in ("HEAD", "OPTIONS")
    }
    documented = {(method, path) for method, path, *_ in OPERATIONS if path.startswith("/oauth/")}
    assert served and served == documented


def test_reviewers_new_password_prints_an_entry_that_signs_in() -> None:
    import subprocess
    import sys
    import tomllib

    import msgspec

    from services.config import ReviewerConfig
    from services.reviewer.accounts import LocalAccounts

    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "reviewers", "new-password", "--name", "alice", "--entity", "User::alice", "--password-stdin"],
        input="a long enough passphrase\n", capture_output=True, text=True, check=True,
    )
    entry = tomllib.loads(result.stdout)["reviewers"][0]
    assert entry["password_hash"].startswith("$argon2id$") and "passphrase" not in result.stdout
    reviewer = LocalAccounts([msgspec.convert(entry, ReviewerConfig)]).sign_in("alice", "a long enough passphrase")
    assert reviewer is not None and (reviewer.entity_type, reviewer.entity_id) == ("User", "alice")
    short = subprocess.run(
        [sys.executable, "-m", "services.cli", "reviewers", "new-password", "--name", "a", "--entity", "User::a", "--password-stdin"],
        input="short\n", capture_output=True, text=True,
    )
    assert short.returncode == 2 and "at least 12" in short.stderr
