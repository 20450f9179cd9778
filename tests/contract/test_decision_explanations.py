"""Who sees which policies decided (AR-102: policy ids are administrator information)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.auth import new_api_key
from tests.server import RunningServer, run_server

AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"
FROZEN_BUY = {
    "subject": {"type": "Agent", "id": "trader-7"},
    "action": {"name": "buy"},
    "resource": {"type": "Portfolio", "id": "alice-frozen"},
    "context": {"amount": 100},
}
PEP, PEP_HASH = new_api_key()
SECURITY, SECURITY_HASH = new_api_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = (
        f'[[callers]]\nname = "pep"\nkey_sha256 = "{PEP_HASH}"\nscopes = ["evaluate"]\n\n'
        f'[[callers]]\nname = "security"\nkey_sha256 = "{SECURITY_HASH}"\nscopes = ["evaluate", "explain"]\n'
    )
    with run_server(tmp_path_factory.mktemp("explain"), config=config, args=("--bundle", str(AGENTS))) as running:
        yield running


def _decide(server: RunningServer, key: str, request: dict) -> dict:
    response = httpx.post(f"{server.base_url}/access/v1/evaluation", json=request, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_policy_ids_reach_only_callers_with_the_explain_scope(server: RunningServer) -> None:
    assert _decide(server, PEP, FROZEN_BUY) == {"decision": False, "context": {"reason": "forbidden"}}
    assert _decide(server, SECURITY, FROZEN_BUY) == {"decision": False, "context": {"reason": "forbidden", "policies": ["frozen-portfolio"]}}


def test_allows_carry_no_context_for_anyone(server: RunningServer) -> None:
    small_buy = {**FROZEN_BUY, "resource": {"type": "Portfolio", "id": "alice-main"}}
    assert _decide(server, PEP, small_buy) == _decide(server, SECURITY, small_buy) == {"decision": True}


def test_expose_policy_ids_shows_them_to_every_caller(tmp_path: Path) -> None:
    config = f'[pdp]\nexpose_policy_ids = true\n\n[[callers]]\nname = "pep"\nkey_sha256 = "{PEP_HASH}"\nscopes = ["evaluate"]\n'
    with run_server(tmp_path, config=config, args=("--bundle", str(AGENTS))) as running:
        assert _decide(running, PEP, FROZEN_BUY)["context"]["policies"] == ["frozen-portfolio"]
