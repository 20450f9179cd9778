"""The `arop` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import get_args

import msgspec

from services.config import REPO_ROOT, CallerScope, Config, ConfigError, load_config


def _config(args: argparse.Namespace) -> Config:
    """Load the configuration; command-line flags become AROP_* overrides so that worker
    processes, which read the environment, see exactly what this process saw."""
    if getattr(args, "config", None):
        os.environ["AROP_CONFIG"] = str(Path(args.config).resolve())
    for flag, variable in (("host", "AROP_SERVER__HOST"), ("port", "AROP_SERVER__PORT"), ("workers", "AROP_SERVER__WORKERS"), ("bundle", "AROP_POLICY__BUNDLE")):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[variable] = str(Path(value).resolve()) if flag == "bundle" else str(value)
    return load_config()


def _fail(message: str, code: int = 2) -> int:
    print(f"arop: {message}", file=sys.stderr)
    return code


async def _with_store(config: Config, work):  # type: ignore[no-untyped-def]
    from services.store import create_store

    store = create_store(config.store.url, pool_min=1, pool_max=2)
    await store.open(migrate=False)
    try:
        return await work(store)
    finally:
        await store.close()


def cmd_worker(args: argparse.Namespace) -> int:
    """One worker process of `arop serve`, on the socket the supervisor passed down."""
    from services.logs import configure_logging
    from services.supervisor import run_worker

    configure_logging(load_config().logging.level)
    run_worker(fd=args.fd)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """`arop serve`'s start-up checks, run in their own process: validate the bundle, build the
    client evidence verifiers (a configured factory must import), apply migrations, print the
    bundle version."""
    from services.oauth.client_challenge import build_verifier
    from services.pdp.bundle import BundleError, load_bundle

    config = _config(args)
    try:
        bundle = load_bundle(config.bundle_path())
    except BundleError as exc:
        return _fail("the policy bundle is invalid:\n  " + "\n  ".join(map(str, exc.problems)))
    try:
        for verifier in config.oauth.client_challenge.verifiers:
            build_verifier(verifier, lambda iss, kid: None)
    except ConfigError as exc:
        return _fail(f"configuration: {exc}")
    asyncio.run(_with_store(config, lambda store: store.migrate()))
    print(bundle.version)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from services.auth import is_loopback
    from services.logs import configure_logging
    from services.supervisor import serve

    config = _config(args)
    configure_logging(config.logging.level)
    if not config.callers and not is_loopback(config.server.host):
        return _fail(
            f"refusing to listen on {config.server.host} without caller credentials: configure [[callers]] "
            "(see `arop callers new-key`) or bind to 127.0.0.1"
        )
    # Validate the bundle and migrate the store in a short-lived process: the supervisor that
    # stays resident beside the workers then never loads Cedar, the database drivers or the web
    # framework (tens of MiB it would hold for nothing). The configuration reaches it, like the
    # workers, through AROP_CONFIG and the AROP_* overrides.
    prepared = subprocess.run([sys.executable, "-m", "services.cli", "_prepare"], capture_output=True, text=True)
    if prepared.returncode != 0:
        return _fail(prepared.stderr.strip().removeprefix("arop: ") or "start-up checks failed")
    version = prepared.stdout.strip()
    if config.server.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="arop-metrics-")
    # Fewer glibc malloc arenas: workers run few threads, and each arena holds on to memory.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    log = logging.getLogger("arop")
    log.info(
        "starting",
        extra={"url": config.server.base_url(), "workers": config.server.workers, "bundle": str(config.bundle_path()), "policy_version": version, "store": config.store.url.split("@")[-1]},
    )
    if not config.callers:
        log.warning("no callers configured: the AuthZEN endpoints answer unauthenticated loopback callers; the admin API is closed")
    return serve(config.server.host, config.server.port, config.server.workers)


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _config(args)
    applied = asyncio.run(_with_store(config, lambda store: store.migrate()))
    print("applied: " + ", ".join(applied) if applied else "the store is up to date")
    return 0


def cmd_entities_import(args: argparse.Namespace) -> int:
    from services.pdp.bundle import check_entities
    from services.store.records import EntityRecord

    config = _config(args)
    try:
        records = msgspec.json.decode(Path(args.file).read_bytes(), type=list[EntityRecord])
    except (OSError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _fail(f"{args.file}: {exc}")
    problems = check_entities(records)
    if problems:
        return _fail(f"{args.file}: " + "; ".join(problems))

    async def work(store):  # type: ignore[no-untyped-def]
        await store.migrate()
        return await store.upsert_entities(records)

    revision = asyncio.run(_with_store(config, work))
    print(f"imported {len(records)} entities (revision {revision}); running instances pick them up within {config.policy.reload_interval:g}s")
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from services.pdp.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(args.bundle)
    except BundleError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(f"{len(exc.problems)} problem(s) in {args.bundle}", 1)
    tiered = sum(p.tiered for p in bundle.policies.values())
    print(
        f"ok: {len(bundle.policies)} policies ({tiered} requestable/challenge), {len(bundle.actions)} actions, "
        f"{len(bundle.entities)} entities, {len(bundle.workflows.by_template)} workflows; version {bundle.version}"
    )
    return 0


def cmd_policy_test(args: argparse.Namespace) -> int:
    from services.pdp.bundle import BundleError, load_bundle
    from services.pdp.policytest import load_suites, run_suites

    try:
        bundle = load_bundle(args.bundle)
        suites = load_suites(Path(args.bundle))
    except BundleError as exc:
        return _fail("the policy bundle is invalid:\n  " + "\n  ".join(map(str, exc.problems)), 1)
    except ValueError as exc:
        return _fail(str(exc), 1)
    results = run_suites(bundle, suites)
    failed = [r for r in results if not r.passed]
    for result in results:
        if args.verbose or not result.passed:
            print(f"{'PASS' if result.passed else 'FAIL'}  {result.suite}: {result.name}" + (f"\n      {result.detail}" if result.detail else ""))
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        return _fail(f"no test cases found in {Path(args.bundle) / 'tests'}", 1)
    return 1 if failed else 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from services.schemas import export

    for path in export(Path(args.output)):
        print(path)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from services.keys import rotate

    config = _config(args)
    key = asyncio.run(_with_store(config, lambda store: rotate(store, grace=timedelta(hours=args.grace_hours))))
    print(f"new signing key {key.kid}; older keys keep verifying for {args.grace_hours} h")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Walk the whole audit chain in the store and report every broken link or altered event, and
    newest events removed (the last event must be the chain head the store records)."""
    from services.store.audit import stored_chain, verify_audit_chain

    config = _config(args)
    events, head = asyncio.run(_with_store(config, stored_chain))
    problems = verify_audit_chain(events, head=head)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return _fail(f"audit log: {len(problems)} problem(s) in {len(events)} events, chain head at seq {head[0]}", 1)
    print(f"audit log intact: {len(events)} events")
    return 0


def cmd_callers_new_key(args: argparse.Namespace) -> int:
    from services.auth import new_api_key

    key, digest = new_api_key()
    scopes = ", ".join(f'"{s}"' for s in args.scopes)
    print(f"API key (shown once, give it to the caller): {key}\n")
    print(f'[[callers]]\nname = "{args.name}"\nkey_sha256 = "{digest}"\nscopes = [{scopes}]')
    return 0


def _reviewer_entry(args: argparse.Namespace, credential: str) -> str | None:
    """The [[reviewers]] entry for `--name`/`--entity` with one credential line; None (after
    saying why) when the entity is not Type::id."""
    entity_type, separator, entity_id = args.entity.partition("::")
    if not separator or not entity_type or not entity_id:
        _fail(f"--entity: {args.entity!r} is not Type::id (e.g. User::alice)")
        return None
    return f'[[reviewers]]\nname = "{args.name}"\nentity = {{ type = "{entity_type}", id = "{entity_id}" }}\n{credential}'


def cmd_reviewers_new_key(args: argparse.Namespace) -> int:
    from services.auth import new_api_key

    key, digest = new_api_key()
    entry = _reviewer_entry(args, f'key_sha256 = "{digest}"')
    if entry is None:
        return 2
    print(f"API key (shown once, give it to the reviewer): {key}\n")
    print(entry)
    return 0


def cmd_reviewers_new_password(args: argparse.Namespace) -> int:
    """A [[reviewers]] entry to sign in to the web UI with: the password is read from stdin
    (`--password-stdin`), asked for twice, or generated and shown once."""
    import getpass
    import secrets

    from services.reviewer.accounts import hash_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.generate:
        password = secrets.token_urlsafe(16)
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            return _fail("the passwords differ")
    if len(password) < 12:
        return _fail("a password must have at least 12 characters")
    entry = _reviewer_entry(args, f'password_hash = "{hash_password(password)}"')
    if entry is None:
        return 2
    if args.generate:
        print(f"Password (shown once, give it to the reviewer): {password}\n")
    print(entry)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="arop", description="AuthZEN PDP and access-request service")
    commands = root.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML configuration file (default: $AROP_CONFIG, else built-in defaults)")
        return p

    serve = with_config(commands.add_parser("serve", help="run the service"))
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 2)")
    serve.add_argument("--bundle", help=f"policy bundle directory (default {REPO_ROOT / 'examples' / 'todo'})")
    serve.set_defaults(run=cmd_serve)

    with_config(commands.add_parser("migrate", help="apply pending store migrations")).set_defaults(run=cmd_migrate)
    commands.add_parser("_prepare", help=argparse.SUPPRESS).set_defaults(run=cmd_prepare)
    worker = commands.add_parser("_worker", help=argparse.SUPPRESS)
    worker.add_argument("--fd", type=int, required=True)
    worker.set_defaults(run=cmd_worker)

    entities = commands.add_parser("entities", help="entity data of the policy information point").add_subparsers(dest="entities_command", required=True)
    import_ = with_config(entities.add_parser("import", help="insert or replace entities from a JSON file"))
    import_.add_argument("file", help='JSON array of {"type","id","properties","parents"}')
    import_.set_defaults(run=cmd_entities_import)

    policy = commands.add_parser("policy", help="policy bundle tooling").add_subparsers(dest="policy_command", required=True)
    check = policy.add_parser("check", help="parse and validate a bundle against its schema")
    check.add_argument("bundle")
    check.set_defaults(run=cmd_policy_check)
    test = policy.add_parser("test", help="run the bundle's declarative test cases")
    test.add_argument("bundle")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(run=cmd_policy_test)

    schemas = commands.add_parser("schemas", help="wire schemas").add_subparsers(dest="schemas_command", required=True)
    export = schemas.add_parser("export", help="write JSON Schema and OpenAPI files")
    export.add_argument("--output", default=str(REPO_ROOT / "schemas"))
    export.set_defaults(run=cmd_schemas_export)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    rotate = with_config(keys.add_parser("rotate", help="add a new signing key and retire the old ones after a grace period"))
    rotate.add_argument("--grace-hours", type=float, default=24.0)
    rotate.set_defaults(run=cmd_keys_rotate)

    audit = commands.add_parser("audit", help="the tamper-evident audit log").add_subparsers(dest="audit_command", required=True)
    with_config(audit.add_parser("verify", help="check every hash link of the audit chain")).set_defaults(run=cmd_audit_verify)

    callers = commands.add_parser("callers", help="API callers").add_subparsers(dest="callers_command", required=True)
    new_key = callers.add_parser("new-key", help="generate an API key and its [[callers]] configuration entry")
    new_key.add_argument("--name", required=True)
    new_key.add_argument("--scopes", nargs="+", default=["evaluate"], choices=list(get_args(CallerScope)))
    new_key.set_defaults(run=cmd_callers_new_key)

    reviewers = commands.add_parser("reviewers", help="people who decide access requests").add_subparsers(dest="reviewers_command", required=True)
    reviewer_key = reviewers.add_parser("new-key", help="generate a reviewer API key and its [[reviewers]] entry")
    reviewer_key.add_argument("--name", required=True)
    reviewer_key.add_argument("--entity", required=True, help="the entity workflows select approvers by, Type::id (e.g. User::alice)")
    reviewer_key.set_defaults(run=cmd_reviewers_new_key)
    reviewer_password = reviewers.add_parser("new-password", help="a password for the reviewer web UI and its [[reviewers]] entry")
    reviewer_password.add_argument("--name", required=True, help="the name the reviewer signs in with")
    reviewer_password.add_argument("--entity", required=True, help="the entity workflows select approvers by, Type::id (e.g. User::alice)")
    given = reviewer_password.add_mutually_exclusive_group()
    given.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    given.add_argument("--generate", action="store_true", help="generate a password and print it once")
    reviewer_password.set_defaults(run=cmd_reviewers_new_password)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        return _fail(f"configuration: {exc}")


if __name__ == "__main__":
    sys.exit(main())
