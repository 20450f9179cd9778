"""Every MUST of the AROP specs that binds this service has a test named after it (DESIGN.md §4:
"contract tests named after the requirement they prove").

The requirement lists are read from the team's spec references beside the repository
(../shared/spec, as in CI). A requirement whose text says MUST and that is ours needs at least one
test whose name carries its id (`test_op_25_…`, `test_…_tx_18_…`); the ones that bind another
party are listed below with the reason, so that a new MUST cannot go unnoticed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "spec"
IN_CI = os.environ.get("CI", "").lower() == "true"

# (spec file, id prefix, the ids in scope: the three transports, the Client Challenge and their
# general rules)
SCOPES = [
    ("arop.md", "OP", range(1, 81)),
    ("oauth-transports.md", "TX", range(1, 84)),
]

NOT_OURS = {
    "TX-30": "the agent decides whether to send Accept-Txn-Challenge, the RS whether to challenge",
    "TX-31": "the RS's WWW-Authenticate error; the sidecar receives the challenge, not the header",
    "TX-36": "the client validates a challenge before presenting it",
    "TX-48": "the RS checks the token it receives",
    "TX-53": "the client ignores members of the challenge it does not understand",
    "TX-55": "the client treats a requirement it cannot satisfy as unauthorized_client",
}


def _musts(text: str, prefix: str, ids: range | list[int]) -> list[str]:
    found = []
    for number in ids:
        match = re.search(rf"^- \*\*{prefix}-{number}\*\*(.*)$", text, re.M)
        if match and "MUST" in match.group(1):
            found.append(f"{prefix}-{number}")
    return found


def _test_names() -> list[str]:
    return [name for path in (ROOT / "tests").rglob("test_*.py") for name in re.findall(r"def (test_\w+)", path.read_text())]


def test_every_must_that_binds_the_service_has_a_test_named_after_it() -> None:
    if not SPEC.is_dir():
        if IN_CI:
            pytest.fail(f"CI runs beside the shared specs, but {SPEC} is missing")
        pytest.skip("no shared specs beside this clone")
    names = _test_names()
    musts = [rid for file, prefix, ids in SCOPES for rid in _musts((SPEC / file).read_text(), prefix, ids)]
    assert len(musts) > 40  # the lists were read

    def named(rid: str) -> bool:
        pattern = re.compile(rf"(?:^|_){rid.lower().replace('-', '_')}(?:_|$)")
        return any(pattern.search(name.removeprefix("test")) for name in names)

    missing = [rid for rid in musts if rid not in NOT_OURS and not named(rid)]
    assert not missing, f"MUSTs without a test named after them: {missing}"
    stale = [rid for rid in NOT_OURS if rid not in musts]
    assert not stale, f"no longer MUSTs in the spec: {stale}"
