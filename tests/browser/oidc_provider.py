"""Run a real OpenID Connect provider (panva's `oidc-provider`, see oidc_provider/provider.mjs)
for the reviewer web UI's browser tests.

The provider logs users in through oidc-provider's development interactions: a form that takes
any login name and any password, the name becoming the account's `sub` (and
`preferred_username`; `name` is it capitalised, `email` is `<name>@example.com`). There is no
consent page: the one client is treated as first-party. A browser test drives the form with

    page.fill(LOGIN_FIELD, "alice")
    page.fill(PASSWORD_FIELD, "anything")
    page.click(SIGN_IN_BUTTON)
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tests.server import free_port, stop

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"

# The dev interaction's login form (oidc-provider 9.13.3, lib/views/login.js).
LOGIN_FIELD = 'input[name="login"]'
PASSWORD_FIELD = 'input[name="password"]'
SIGN_IN_BUTTON = 'button[type="submit"]'
# The RP-initiated logout confirmation at end_session_endpoint (lib/helpers/defaults.js).
LOGOUT_CONFIRM_BUTTON = 'button[name="logout"][value="yes"]'

READY_TIMEOUT = 30.0


class OIDCProviderError(RuntimeError):
    """The provider could not be installed or did not start."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise OIDCProviderError(
            f"`{tool}` is not on PATH: the browser tests' OpenID provider needs Node.js (>= 20) and npm"
        )
    return path


def _install(npm: str) -> None:
    """`npm ci` from the committed package-lock.json, once (node_modules/ is git-ignored)."""
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        check=False, cwd=PROVIDER_DIR, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        raise OIDCProviderError(
            f"npm ci in {PROVIDER_DIR} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@contextmanager
def run_oidc_provider(
    *, client_id: str, client_secret: str, redirect_uri: str, tls: tuple[Path, Path], post_logout_redirect_uri: str | None = None
) -> Iterator[str]:
    """Start the provider on a free loopback port with one confidential client (secret sent
    with HTTP Basic or in the form body; PKCE S256 required); yield its issuer URL
    (`https://127.0.0.1:PORT`, no trailing slash) once it serves; stop it afterwards. `tls`
    is the server certificate and key files (tests.https_receiver.TestCA.issue_server)."""
    node, npm = _require("node"), _require("npm")
    _install(npm)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OIDC_") and k != "NODE_ENV"},
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URI": redirect_uri,
        "OIDC_TLS_CERT": str(tls[0]),
        "OIDC_TLS_KEY": str(tls[1]),
    }
    if post_logout_redirect_uri:
        env["OIDC_POST_LOGOUT_REDIRECT_URI"] = post_logout_redirect_uri
    # stderr (oidc-provider's warnings) goes to a file, not a pipe that nobody reads.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            issuer = _wait_ready(process, stderr)
            try:
                yield issuer
            except Exception:
                # The test failed: show what the provider said (pytest reports it with the test).
                sys.stderr.write(f"--- OpenID provider's stderr:\n{_read(stderr)}")
                raise
        finally:
            stop(process, timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def _wait_ready(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> str:
    """The issuer from the provider's `READY <issuer>` line, read on a thread so that a
    provider that hangs silently fails after READY_TIMEOUT instead of blocking forever."""
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT).decode().strip()
    except queue.Empty:
        line, problem = "", f"did not print READY in {READY_TIMEOUT:.0f}s"
    else:
        problem = f"printed {line!r} instead of READY" if line else "exited before it was ready"
    if line.startswith("READY "):
        return line.removeprefix("READY ")
    process.kill()
    returncode = process.wait()
    raise OIDCProviderError(
        f"the OpenID provider (node provider.mjs in {PROVIDER_DIR}) {problem} (exit {returncode}):\n{_read(stderr)}"
    )


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")

