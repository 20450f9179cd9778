"""Servers of the contract suites, beyond the shared `server` and `secured_server`.

Each costs a process start (~1.5 s), so they are session-scoped and configured to serve several
suites at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import RunningServer, run_server

TENANT_URL = "https://pdp.example.net/tenant-a"
MAX_BODY_BYTES = 2048
MAX_BATCH_ITEMS = 3
MAX_SEARCH_LIMIT = 2

# A bundle exercising what the Todo example cannot: context-dependent policies, a forbid,
# action properties, Cedar decimals and the reserved context names.
CONTRACT_SCHEMA = """
entity User;
entity Doc;
type Ctx = {
  level?: Long,
  a?: Long,
  b?: Long,
  amount?: decimal,
  n?: Long,
  action_properties?: { channel?: String },
  client_evidence?: { type?: String },
};
action read, pay, both, trade, spend, count appliesTo { principal: User, resource: Doc, context: Ctx };
"""

CONTRACT_POLICIES = """
@id("read")
permit (principal, action == Action::"read", resource);

@id("forbid-high-level")
forbid (principal, action == Action::"read", resource)
  when { context has level && context.level > 3 };

@id("pay-by-sepa")
permit (principal, action == Action::"pay", resource)
  when { context has action_properties && context.action_properties has channel &&
         context.action_properties.channel == "sepa" };

@id("both")
permit (principal, action == Action::"both", resource) when { context has a && context has b };

@id("trade-with-evidence")
permit (principal, action == Action::"trade", resource) when { context has client_evidence };

@id("spend-up-to-2.5")
permit (principal, action == Action::"spend", resource)
  when { context has amount && context.amount.lessThanOrEqual(decimal("2.5")) };

@id("count-three")
permit (principal, action == Action::"count", resource) when { context has n && context.n == 3 };
"""

CONTRACT_ENTITIES = [{"type": "User", "id": "alice"}, {"type": "Doc", "id": "d1"}]


def write_contract_bundle(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "schema.cedarschema").write_text(CONTRACT_SCHEMA)
    (path / "policies.cedar").write_text(CONTRACT_POLICIES)
    (path / "entities.json").write_text(json.dumps(CONTRACT_ENTITIES))
    return path


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """A client of the out-of-the-box server (loopback, anonymous, Todo bundle)."""
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def configured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A tenant PDP identifier behind a proxy, and small limits (AZ-31, AZ-34, AZ-55)."""
    config = (
        f'[server]\npublic_url = "{TENANT_URL}"\nmax_body_bytes = {MAX_BODY_BYTES}\n\n'
        f"[pdp]\nmax_batch_items = {MAX_BATCH_ITEMS}\nmax_search_limit = {MAX_SEARCH_LIMIT}\n"
    )
    with run_server(tmp_path_factory.mktemp("configured"), config=config) as running:
        yield running


@pytest.fixture(scope="session")
def configured(configured_server: RunningServer) -> Iterator[httpx.Client]:
    with configured_server.client() as c:
        yield c


@pytest.fixture(scope="session")
def bundle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The service on the contract bundle above."""
    root = tmp_path_factory.mktemp("contract-bundle")
    bundle = write_contract_bundle(root / "bundle")
    with run_server(root / "work", args=("--bundle", str(bundle))) as running:
        yield running


@pytest.fixture(scope="session")
def bundle_client(bundle_server: RunningServer) -> Iterator[httpx.Client]:
    with bundle_server.client() as c:
        yield c
