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

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.node import run_node
from tests.server import free_port

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"

# The dev interaction's login form (oidc-provider 9.13.3, lib/views/login.js).
LOGIN_FIELD = 'input[name="login"]'
PASSWORD_FIELD = 'input[name="password"]'
SIGN_IN_BUTTON = 'button[type="submit"]'
# The RP-initiated logout confirmation at end_session_endpoint (lib/helpers/defaults.js).
LOGOUT_CONFIRM_BUTTON = 'button[name="logout"][value="yes"]'


@contextmanager
def run_oidc_provider(
    *, client_id: str, client_secret: str, redirect_uri: str, tls: tuple[Path, Path], post_logout_redirect_uri: str | None = None
) -> Iterator[str]:
    """Start the provider on a free loopback port with one confidential client (secret sent
    with HTTP Basic or in the form body; PKCE S256 required); yield its issuer URL
    (`https://127.0.0.1:PORT`, no trailing slash) once it serves; stop it afterwards. `tls`
    is the server certificate and key files (tests.https_receiver.TestCA.issue_server)."""
    port = free_port()
    env = {
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URI": redirect_uri,
        "OIDC_TLS_CERT": str(tls[0]),
        "OIDC_TLS_KEY": str(tls[1]),
    }
    if post_logout_redirect_uri:
        env["OIDC_POST_LOGOUT_REDIRECT_URI"] = post_logout_redirect_uri
    with run_node("provider.mjs", cwd=PROVIDER_DIR, env=env, drop_env_prefix="OIDC_") as issuer:
        yield issuer
