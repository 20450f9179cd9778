"""Request bodies of the benchmark, built from the public AuthZEN Todo interop vectors.

Both servers get the *same* questions: an AuthZEN body for our PDP and the equivalent
Cerbos CheckResources body. In Cerbos the PEP passes the principal's roles and attributes
(that is how Cerbos is normally used), so its bodies carry them from users.json; our PDP
looks the subject up in its own information point from the opaque PID alone.

Expected decisions come from the vectors for the single-evaluation cases. Batch bodies
(100 todos each) have no vector of that size, so their expectations come from `oracle()`,
a plain-Python statement of the scenario's rules that is itself checked against every
vector before it is trusted.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The vectors are vendored with the conformance tests, so a fresh clone (CI) has them; the
# shared copy next to the design docs is the fallback. run.py's --vectors overrides both.
_VENDORED = REPO / "tests" / "conformance" / "todo"
DEFAULT_VECTORS = _VENDORED if (_VENDORED / "users.json").exists() else Path("/work/shared/conformance/todo")
VECTOR_FILE = "decisions-authorization-api-1_0-02.json"

BATCH_SIZE = 100

Json = dict[str, Any]


class OracleError(ValueError):
    """The rules oracle disagrees with a public vector: expectations cannot be derived."""


@dataclass(frozen=True)
class Body:
    """One question asked to both servers, with the decisions both must answer."""

    arop: Json  # AuthZEN body (evaluation or evaluations)
    cerbos: Json  # Cerbos CheckResources body
    expected: list[bool]  # one decision per item, in order


@dataclass(frozen=True)
class Scenario:
    name: str  # "single" or "batch"
    arop_path: str
    cerbos_path: str
    items: int  # decisions per request
    bodies: list[Body]


def load_users(vectors: Path) -> dict[str, Json]:
    return json.loads((vectors / "users.json").read_text())


def load_vectors(vectors: Path) -> Json:
    return json.loads((vectors / VECTOR_FILE).read_text())


def oracle(user: Json, action: str, resource: Json) -> bool:
    """The Todo scenario's rules (README of the vectors); roles nest viewer < editor < admin/evil_genius."""
    roles = set(user["roles"])
    editor = bool(roles & {"editor", "admin", "evil_genius"})
    viewer = editor or "viewer" in roles
    owns = resource.get("properties", {}).get("ownerID") == user["email"]
    match action:
        case "can_read_user" | "can_read_todos":
            return viewer
        case "can_create_todo":
            return editor
        case "can_update_todo":
            return (editor and owns) or "evil_genius" in roles
        case "can_delete_todo":
            return (editor and owns) or "admin" in roles
    return False


def check_oracle(users: dict[str, Json], vectors: Json) -> None:
    """Refuse to derive expectations from an oracle that disagrees with any public vector."""
    for case in vectors["evaluation"]:
        req = case["request"]
        got = oracle(users[req["subject"]["id"]], req["action"]["name"], req["resource"])
        if got != case["expected"]:
            raise OracleError(f"oracle disagrees with vector {json.dumps(req)}: {got}")
    for case in vectors["evaluations"]:
        req = case["request"]
        for item, exp in zip(req["evaluations"], case["expected"], strict=True):
            got = oracle(users[req["subject"]["id"]], req["action"]["name"], item["resource"])
            if got != exp["decision"]:
                raise OracleError(f"oracle disagrees with batch vector {json.dumps(req)}")


def cerbos_principal(pid: str, users: dict[str, Json]) -> Json:
    user = users[pid]
    return {"id": pid, "roles": user["roles"], "attr": {"email": user["email"], "name": user["name"]}}


def cerbos_resource(resource: Json) -> Json:
    return {"kind": resource["type"], "id": resource["id"], "attr": resource.get("properties", {})}


def single_bodies(users: dict[str, Json], vectors: Json) -> list[Body]:
    """All 40 single-evaluation vectors (26 allow, 14 deny): the realistic mix of a todo app."""
    bodies = []
    for i, case in enumerate(vectors["evaluation"]):
        req = case["request"]
        action = req["action"]["name"]
        cerbos = {
            "requestId": f"s{i}",
            "principal": cerbos_principal(req["subject"]["id"], users),
            "resources": [{"actions": [action], "resource": cerbos_resource(req["resource"])}],
        }
        bodies.append(Body(arop=req, cerbos=cerbos, expected=[case["expected"]]))
    return bodies


def batch_bodies(users: dict[str, Json]) -> list[Body]:
    """One body per (user, update|delete): 100 todos owned round-robin by the five users.

    This is the "which of these todos may I edit" question a list view asks. Editors (Morty,
    Summer) get 20 allows in 100, Rick (admin + evil_genius) 100, the viewers (Beth, Jerry)
    none: 36 % allows over the 10 bodies.
    """
    emails = [u["email"] for u in users.values()]
    # Deterministic ids so that runs are comparable.
    todos = [
        {"type": "todo", "id": str(uuid.UUID(int=0x7240D0DB << 96 | n)),
         "properties": {"ownerID": emails[n % len(emails)]}}
        for n in range(BATCH_SIZE)
    ]
    bodies = []
    for pid, user in users.items():
        for action in ("can_update_todo", "can_delete_todo"):
            arop = {
                "subject": {"type": "user", "id": pid},
                "action": {"name": action},
                "evaluations": [{"resource": t} for t in todos],
            }
            cerbos = {
                "requestId": f"b-{user['email']}-{action}",
                "principal": cerbos_principal(pid, users),
                "resources": [{"actions": [action], "resource": cerbos_resource(t)} for t in todos],
            }
            expected = [oracle(user, action, t) for t in todos]
            bodies.append(Body(arop=arop, cerbos=cerbos, expected=expected))
    return bodies


def build(vectors_dir: Path = DEFAULT_VECTORS) -> list[Scenario]:
    users = load_users(vectors_dir)
    vectors = load_vectors(vectors_dir)
    check_oracle(users, vectors)
    return [
        Scenario("single", "/access/v1/evaluation", "/api/check/resources", 1,
                 single_bodies(users, vectors)),
        Scenario("batch", "/access/v1/evaluations", "/api/check/resources", BATCH_SIZE,
                 batch_bodies(users)),
    ]


def arop_decisions(scenario: Scenario, response: Json) -> list[bool]:
    if scenario.name == "single":
        return [response["decision"]]
    return [item["decision"] for item in response["evaluations"]]


def cerbos_decisions(body: Body, response: Json) -> list[bool]:
    # Results come back in request order, one action per resource.
    actions = [r["actions"][0] for r in body.cerbos["resources"]]
    return [res["actions"][a] == "EFFECT_ALLOW" for res, a in zip(response["results"], actions, strict=True)]
