"""Helpers shared by the test suites."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(env_var: str, what: str) -> str:
    """Return the address of an external service the test needs.

    Locally a missing service skips the test; under CI=true it fails, because CI must run every
    integration test against the real service (.ci/run starts them).
    """
    value = os.environ.get(env_var, "")
    if value:
        return value
    message = f"{what} not configured: set {env_var}"
    if IN_CI:
        pytest.fail(f"{message} (CI forbids skipping integration tests)")
    pytest.skip(message)
