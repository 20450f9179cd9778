"""The public AuthZEN Todo interop vectors, over real HTTP against `arop serve` with its default
bundle. Every case of all three files must pass.

The vectors are vendored in tests/conformance/todo so that a clone runs them on its own; where the
team's shared copy sits beside the repository (as in CI), the vendored copy must equal it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server import RunningServer

from tests.support import IN_CI

VECTORS = Path(__file__).resolve().parent / "todo"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "todo"
FILES = sorted(VECTORS.glob("decisions-authorization-api-1_0-*.json"))


def _cases(kind: str) -> list[Any]:
    out = []
    for file in FILES:
        for index, case in enumerate(json.loads(file.read_text()).get(kind, [])):
            out.append(pytest.param(case, id=f"{file.stem.rsplit('-', 1)[-1]}-{kind}-{index}"))
    return out


def test_vectors_are_present() -> None:
    assert len(FILES) == 3, f"expected the three interop files in {VECTORS}"


def test_vendored_vectors_equal_the_shared_copy() -> None:
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"CI runs beside the shared vectors, but {SHARED} is missing")
        pytest.skip("no shared copy beside this clone")
    shared = {p.name: p.read_bytes() for p in SHARED.iterdir() if p.is_file()}
    vendored = {p.name: p.read_bytes() for p in VECTORS.iterdir() if p.is_file()}
    assert vendored == shared


@pytest.mark.parametrize("case", _cases("evaluation"))
def test_evaluation_vector(server: RunningServer, case: dict[str, Any]) -> None:
    with server.client() as client:
        response = client.post("/access/v1/evaluation", json=case["request"])
    assert response.status_code == 200, response.text
    assert response.json()["decision"] is case["expected"]


@pytest.mark.parametrize("case", _cases("evaluations"))
def test_evaluations_vector(server: RunningServer, case: dict[str, Any]) -> None:
    with server.client() as client:
        response = client.post("/access/v1/evaluations", json=case["request"])
    assert response.status_code == 200, response.text
    got = [item["decision"] for item in response.json()["evaluations"]]
    assert got == [item["decision"] for item in case["expected"]]
