"""Policy bundles: a directory of Cedar policies, a Cedar schema and entity data.

    bundle/
      schema.cedarschema         Cedar schema (or schema.cedarschema.json)
      *.cedar, policies/*.cedar  policies, any depth (tests/ excluded)
      entities.json              optional: [{"type","id","properties","parents":[{"type","id"}]}]
      workflows.toml             approval workflows, one per @requestable template
      oauth.toml                 optional: the OAuth vocabulary of the AS-facing sidecar (OP-40)
      tests/*.json               optional: declarative test cases (`arop policy test`)

A bundle is parsed and validated once per version; every problem is reported with file:line,
and a bundle with any problem is refused as a whole (a bad bundle never replaces a good one).

Tier annotations (DESIGN.md §3): `@requestable("<template>")` and `@challenge("<type>")` on a
`permit` put it outside standing access. Such permits are compiled into a separate policy set
that is consulted only to explain a denial; they never allow anything on their own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
from cedarpy import pst

from profiles.arop.vocabulary import VOCABULARY_FILE, Vocabulary, parse_vocabulary
from services.access_requests.workflows import WORKFLOWS_FILE, Workflows, auto_approve_policy, load_workflows
from services.pdp import cedar
from services.pdp.context_members import bundle_members
from services.pdp.entities import EntityIndex
from services.pdp.values import UnsupportedValue, to_cedar_record
from services.store.records import EntityRecord, EntityUid

SCHEMA_FILES = ("schema.cedarschema", "schema.cedarschema.json")
ENTITIES_FILE = "entities.json"
TESTS_DIR = "tests"
TIER_ANNOTATIONS = ("requestable", "challenge")
MAX_ENTITY_DEPTH = 32


class Problem(msgspec.Struct, frozen=True):
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class BundleError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


class PolicyInfo(msgspec.Struct, frozen=True):
    id: str
    effect: Literal["permit", "forbid"]
    file: str
    line: int
    annotations: dict[str, str]

    @property
    def requestable(self) -> str | None:
        """The workflow template through which a denial this permit would allow is requestable."""
        return self.annotations.get("requestable")

    @property
    def challenge(self) -> str | None:
        """The client evidence type a client may be challenged for."""
        return self.annotations.get("challenge")

    @property
    def tiered(self) -> bool:
        return self.requestable is not None or self.challenge is not None


class Bundle(msgspec.Struct, frozen=True):
    path: Path
    version: str
    policies: dict[str, PolicyInfo]
    standing: Any  # cedar.PolicySet: permits without a tier annotation, and every forbid
    tiered: Any | None  # cedar.PolicySet of the tier permits, None when there are none
    schema: Any
    actions: dict[str, list[str]]  # action name → parent action names, from the schema
    entities: list[EntityRecord]
    workflows: Workflows
    # No policy can tell two resources apart except by their type, attributes and parents (no
    # `resource == …`, `resource in …`, nor `resource` used as a value): batch items asking the
    # same question about such resources need one Cedar evaluation (see Engine._run).
    resource_identity_free: bool = False
    # Entities the policies name as literals (`Group::"admins"`, `Settings::"global"`): Cedar may
    # read them in any evaluation, so every entity slice includes them.
    literal_uids: frozenset[EntityUid] = frozenset()
    # The context members a policy or an auto-approval condition reads (AR-17, AR-19): what a
    # requestable denial binds. None: some condition reads the context whole, so every member
    # a request sends binds (services.pdp.context_members).
    context_members: frozenset[str] | None = frozenset()
    # template → cedar.PolicySet of the workflow's `auto_approve` condition (Engine.auto_approved).
    auto_approve: dict[str, Any] = {}
    # How `authorization_details` types and scope tokens map to resource/action pairs (OP-40).
    vocabulary: Vocabulary = Vocabulary()


def bundle_files(path: Path) -> list[Path]:
    """Every file that is part of the bundle's meaning (tests excluded), in a stable order."""
    files = [p for p in path.rglob("*.cedar") if TESTS_DIR not in p.relative_to(path).parts[:1]]
    files += [path / name for name in (*SCHEMA_FILES, ENTITIES_FILE, WORKFLOWS_FILE, VOCABULARY_FILE) if (path / name).is_file()]
    files += [p for p in path.glob("schemas/*.json")]  # request schemas of workflows
    return sorted(files)


def bundle_signature(path: Path) -> tuple[tuple[str, str], ...]:
    """The names and content hashes of the bundle's files, for change polling. Contents, not
    sizes and mtimes: copies that keep mtimes (`cp -p`, `rsync -a`, fixed-epoch builds) must
    still be noticed. Bundles are small; hashing them every few seconds is cheap."""
    out = []
    for file in bundle_files(path):
        try:
            out.append((str(file), hashlib.sha256(file.read_bytes()).hexdigest()))
        except (FileNotFoundError, IsADirectoryError):
            continue
    return tuple(out)


def load_bundle(path: str | Path) -> Bundle:
    """Parse and validate a bundle directory; raise BundleError listing every problem."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise BundleError([Problem(str(root), 0, "bundle directory not found")])
    problems: list[Problem] = []
    digest = hashlib.sha256()
    for file in bundle_files(root):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")

    schema, actions = _load_schema(root, problems)
    policies: dict[str, PolicyInfo] = {}
    standing: dict[str, Any] = {}
    tiered: dict[str, Any] = {}
    identity_free = [True]
    literals: set[EntityUid] = set()
    for file in bundle_files(root):
        if file.suffix == ".cedar":
            _load_policy_file(root, file, schema, policies, standing, tiered, problems, identity_free, literals)
    if not policies and not problems:
        problems.append(Problem(root.name, 0, "the bundle has no policies"))
    entities = _load_entities(root, problems)
    workflows, workflow_problems = load_workflows(root)
    problems.extend(Problem(WORKFLOWS_FILE, 0, message) for message in workflow_problems)
    if not workflow_problems:
        problems.extend(
            Problem(info.file, info.line, f"@requestable({info.requestable!r}): no such workflow in {WORKFLOWS_FILE}")
            for info in policies.values()
            if info.requestable is not None and workflows.get(info.requestable) is None
        )
    vocabulary = _load_vocabulary(root, problems)
    if problems:
        raise BundleError(problems)
    auto_approve = _auto_approve_policies(workflows)
    return Bundle(
        path=root,
        version=digest.hexdigest()[:16],
        policies=policies,
        standing=cedar.policy_set_from_json(standing),
        tiered=cedar.policy_set_from_json(tiered) if tiered else None,
        schema=schema,
        actions=actions,
        entities=entities,
        workflows=workflows,
        resource_identity_free=identity_free[0],
        literal_uids=frozenset(literals),
        context_members=bundle_members([*standing.values(), *tiered.values(), *auto_approve.values()]),
        auto_approve={template: cedar.policy_set_from_json({"auto_approve": body}) for template, body in auto_approve.items()},
        vocabulary=vocabulary,
    )


def _load_vocabulary(root: Path, problems: list[Problem]) -> Vocabulary:
    """OP-40: the bundle's oauth.toml, if any; its problems refuse the bundle like workflows'
    (a sidecar must never expand a request with a half-read vocabulary)."""
    file = root / VOCABULARY_FILE
    if not file.is_file():
        return Vocabulary()
    vocabulary, found = parse_vocabulary(file.read_text(encoding="utf-8"))
    problems.extend(Problem(VOCABULARY_FILE, 0, message) for message in found)
    return vocabulary


def _auto_approve_policies(workflows: Workflows) -> dict[str, dict[str, Any]]:
    """The JSON EST of each workflow's `auto_approve` condition, by template. Compiled once per
    bundle version like every policy; the conditions were checked by load_workflows."""
    policies = {}
    for template, workflow in workflows.by_template.items():
        if workflow.auto_approve is not None:
            (body,) = cedar.policy_to_json(auto_approve_policy(workflow.auto_approve))["staticPolicies"].values()
            policies[template] = body
    return policies


_ACTION_DECL = re.compile(r'^action "((?:[^"\\]|\\.)*)"(?: in \[([^\]]*)\])?', re.MULTILINE)
_ACTION_REF = re.compile(r'^Action::"((?:[^"\\]|\\.)*)"$')


def _load_schema(root: Path, problems: list[Problem]) -> tuple[Any, dict[str, list[str]]]:
    present = [name for name in SCHEMA_FILES if (root / name).is_file()]
    if not present:
        problems.append(Problem(root.name, 0, f"missing schema: add {SCHEMA_FILES[0]} (policies are validated against it)"))
        return None, {}
    name = present[0]
    try:
        schema = cedar.schema_from_text((root / name).read_text(encoding="utf-8"), json_format=name.endswith(".json"))
    except ValueError as exc:
        problems.append(Problem(name, 0, f"invalid schema: {exc}"))
        return None, {}
    # The normalised rendering declares one top-level action per line start (namespaced actions,
    # indented, are not addressable by an AuthZEN action name and are left out).
    actions: dict[str, list[str]] = {}
    for match in _ACTION_DECL.finditer(str(schema)):
        parents = []
        for ref in filter(None, (part.strip() for part in (match.group(2) or "").split(","))):
            parent = _ACTION_REF.match(ref)
            if parent:
                parents.append(parent.group(1))
        actions[match.group(1)] = parents
    return schema, actions


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split Cedar policy text into (first line, statement) at each top-level `;`.

    Cedar has no `;` inside expressions, so outside string literals and `//` comments a `;`
    always ends a policy. cedarpy reports no source positions; splitting gives file:line.
    """
    statements: list[tuple[int, str]] = []
    start, line, start_line = 0, 1, 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif not ch.isspace() and not start_line:
            start_line = line
        if ch == ";":
            statements.append((start_line, text[start : i + 1]))
            start, start_line = i + 1, 0
        i += 1
    if text[start:].strip() and _has_code(text[start:]):
        statements.append((start_line or line, text[start:]))
    return statements


def _has_code(fragment: str) -> bool:
    return any(line.strip() and not line.strip().startswith("//") for line in fragment.splitlines())


def _load_policy_file(
    root: Path,
    file: Path,
    schema: Any,
    policies: dict[str, PolicyInfo],
    standing: dict[str, Any],
    tiered: dict[str, Any],
    problems: list[Problem],
    identity_free: list[bool],
    literals: set[EntityUid],
) -> None:
    relative = file.relative_to(root).as_posix()
    for line, statement in split_statements(file.read_text(encoding="utf-8")):
        try:
            est = cedar.policy_to_json(statement)
        except ValueError as exc:
            problems.append(Problem(relative, line, f"syntax error: {exc}"))
            continue
        if est.get("templates"):
            problems.append(Problem(relative, line, "policy templates (?principal/?resource) are not supported"))
            continue
        (body,) = est["staticPolicies"].values()
        annotations = {k: v for k, v in (body.get("annotations") or {}).items()}
        policy_id = annotations.get("id") or f"{relative}:{line}"
        info = PolicyInfo(policy_id, body["effect"], relative, line, annotations)
        problem = _check_policy(info, policies)
        if problem:
            problems.append(Problem(relative, line, problem))
            continue
        if schema is not None:
            problems.extend(Problem(relative, line, error) for error in cedar.validate_policy(statement, schema))
        policies[policy_id] = info
        (tiered if info.tiered else standing)[policy_id] = body
        tree = cedar.policy_tree(statement)
        literals.update(EntityUid("::".join((*uid.type.namespace, uid.type.basename)), uid.id) for uid in pst.entity_uids(tree))
        if identity_free[0] and not _resource_identity_free(tree):
            identity_free[0] = False


def _resource_identity_free(tree: Any) -> bool:
    """Whether a policy sees the resource only through its type, attributes and parents:
    `resource` appears only as the base of `.attr`, `has` or a plain `is`, and the scope
    constrains it at most by type. Anything else (`==`, `in`, `contains(resource)`…) or a node
    kind this analysis does not know counts as depending on the resource's identity."""
    (template,) = tree.static_policies.values()
    if not isinstance(template.resource, (pst.ScopeAny, pst.ScopeIs)):
        return False

    def free(node: Any, parent: Any) -> bool:
        if isinstance(node, pst.Var):
            if node.name != "resource":
                return True
            return (isinstance(parent, (pst.GetAttr, pst.HasAttr)) and parent.base is node) or (
                isinstance(parent, pst.Is) and parent.base is node and parent.in_expr is None
            )
        if isinstance(node, (tuple, list)):
            return all(free(child, parent) for child in node)
        if isinstance(node, dict):  # record literals (pst.FrozenMap is a dict)
            return all(free(child, parent) for child in node.values())
        if dataclasses.is_dataclass(node):
            return all(free(getattr(node, field.name), node) for field in dataclasses.fields(node))
        return isinstance(node, (str, int, float, bool, type(None)))

    return all(free(clause, template) for clause in template.clauses)


def _check_policy(info: PolicyInfo, known: dict[str, PolicyInfo]) -> str | None:
    if info.id in known:
        other = known[info.id]
        return f"duplicate policy id {info.id!r} (also {other.file}:{other.line})"
    if "`" in info.id:
        return "a policy id must not contain a backtick"
    for given in info.annotations:
        if given.lower() in TIER_ANNOTATIONS and given not in TIER_ANNOTATIONS:
            return f"@{given}: did you mean @{given.lower()}? (annotations are case-sensitive; a misspelt tier would be standing access)"
    for name in TIER_ANNOTATIONS:
        if name in info.annotations:
            if info.effect != "permit":
                return f"@{name} applies to permit policies only"
            if not info.annotations[name]:
                return f"@{name} needs a value, e.g. @{name}(\"owner_approval\")"
    return None


def _load_entities(root: Path, problems: list[Problem]) -> list[EntityRecord]:
    file = root / ENTITIES_FILE
    if not file.is_file():
        return []
    try:
        records = msgspec.json.decode(file.read_bytes(), type=list[EntityRecord])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        problems.append(Problem(ENTITIES_FILE, 0, str(exc)))
        return []
    problems.extend(Problem(ENTITIES_FILE, 0, message) for message in check_entities(records))
    return records


_CEDAR_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$")


@functools.lru_cache(maxsize=1024)
def is_cedar_type(name: str) -> bool:
    """Whether `name` can be a Cedar entity type (an AuthZEN type must map onto one)."""
    return bool(_CEDAR_TYPE.match(name))


def check_entities(records: list[EntityRecord]) -> list[str]:
    """Problems that would keep entities out of Cedar: bad type names, duplicates and
    unrepresentable values."""
    seen: set[EntityUid] = set()
    out: list[str] = []
    for index, record in enumerate(records):
        for uid in (record.uid, *record.parents):
            if not is_cedar_type(uid.type):
                out.append(f"[{index}] {uid.type!r} is not a valid Cedar entity type name")
        if record.type == "Action" or record.type.endswith("::Action"):
            # Actions and their groups come from the schema alone: entity data must not be able to
            # take an action out of a group a forbid names.
            out.append(f"[{index}] Action entities come from the schema, not from entity data")
        if record.uid in seen:
            out.append(f"[{index}] duplicate entity {record.type}::{record.id!r}")
        seen.add(record.uid)
        try:
            to_cedar_record(record.properties, f"[{index}].properties", MAX_ENTITY_DEPTH)
        except UnsupportedValue as exc:
            out.append(str(exc))
        # PostgreSQL's jsonb cannot hold U+0000; refusing it everywhere keeps both stores equal.
        if "\\u0000" in msgspec.json.encode(record).decode():
            out.append(f"[{index}] strings must not contain U+0000")
    if not out:
        out.extend(_cedar_problems(records))
    return out


def _cedar_problems(records: list[EntityRecord]) -> list[str]:
    """What Cedar itself refuses (malformed `__entity`/`__extn` escapes), record by record."""

    def parses(batch: list[EntityRecord]) -> bool:
        fragments = EntityIndex(batch).fragments.values()
        try:
            cedar.Entities.from_json_str("[" + ",".join(f.decode() for f in fragments) + "]", None)
        except ValueError:
            return False
        return True

    if parses(records):
        return []
    return [f"[{i}] {r.type}::{r.id!r}: a value is not valid Cedar data (check __entity/__extn escapes)" for i, r in enumerate(records) if not parses([r])]
