"""AZ-54/AZ-55: the PDP protects itself before doing work for a caller."""

from __future__ import annotations

import httpx

from tests.server import RunningServer


def test_az_55_an_unauthenticated_body_is_refused_before_it_is_read(secured_server: RunningServer) -> None:
    """Authentication comes first: without credentials a body over the size limit gets the 401,
    not a 413, so an anonymous client cannot make the PDP buffer bodies."""
    too_large = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    response = httpx.post(f"{secured_server.base_url}/access/v1/evaluation", content=too_large, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
