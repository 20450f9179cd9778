"""SIGKILL at any point of the ARAP flow loses no task, approval or audit event (issue: "Done
when"; DESIGN.md §3 Storage: "restarting the process loses nothing").

The real service (`arop serve`, one process or a supervisor with two workers) is killed with
SIGKILL — no shutdown code runs — at the points of the flow where state was just acknowledged,
and started again on the same store and the same port (its URLs, and so the issuer and audience
of what it signed, are those of a service that restarts in place). Every test runs on SQLite and
on PostgreSQL. Each task change is one store transaction, so a kill lands before or after a
commit: what was answered with a 2xx must be there after the restart, whole.
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from services.access_requests.progress import read_state
from services.auth import new_api_key
from services.store import Store
from services.store.audit import stored_chain
from services.store.records import ApprovalRecord, AuditEvent, TaskRecord
from tests.arap.conftest import BUNDLE, Credentials, Flow
from tests.https_receiver import TestCA, https_receiver
from tests.server import Restartable, RunningServer
from tests.support import fresh_postgres_schema_sync, on_store, poll

SUBMITTED, STEP_APPROVED, APPROVED = "access_request.submitted", "task.step_approved", "task.approved"
# The change-approval workflow of the bundle: a manager, then the owner (carol owns billing).
MANAGERS = ("alice", "bob")
OWNER = "carol"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgres":
        with fresh_postgres_schema_sync() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'arop.db'}"


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    return Credentials()


class Deployment:
    """One installation of the service — its store, port and configuration (tests/server.py
    `Restartable`) — that a test starts, kills and starts again, with the flow's credentials."""

    def __init__(self, workdir: Path, store_url: str, workers: int, credentials: Credentials, extra_config: str = "") -> None:
        self.workdir = workdir
        self.store_url = store_url
        self.workers = workers
        self.credentials = credentials
        self.extra_config = extra_config
        self.service = Restartable(
            workdir, config=credentials.config(extra_config), env={"AROP_STORE__URL": store_url}, args=("--bundle", str(BUNDLE)),
            workers=workers,
        )

    @contextmanager
    def start(self) -> Iterator[tuple[RunningServer, Flow]]:
        with self.service.start() as server:
            flow = Flow(server, self.credentials)
            try:
                yield server, flow
            finally:
                flow.http.close()

    def snapshot(self) -> Snapshot:
        """What the store holds now (the service may be running)."""
        return on_store(self.store_url, _snapshot)

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        """`arop audit verify` on the deployment's store, as an operator runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AROP_")}
        env["AROP_STORE__URL"] = self.store_url
        command = [sys.executable, "-m", "services.cli", "audit", "verify"]
        return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def deployment(tmp_path: Path, store_url: str, workers: int, credentials: Credentials) -> Deployment:
    return Deployment(tmp_path, store_url, workers, credentials)


class Snapshot(msgspec.Struct):
    """What the store holds: every task, the approvals its items name, the audit chain."""

    tasks: dict[str, TaskRecord]
    approvals: dict[str, ApprovalRecord]
    audit: list[AuditEvent]

    def kinds(self, task_id: str) -> list[str]:
        """The kinds of the task's audit events, in chain order."""
        return [event.kind for event in self.audit if event.task_id == task_id]

    def changes(self, task_id: str) -> list[str]:
        """The kinds of the audit events of the task's changes (not of re-evaluations, callbacks
        or refused review attempts, which change nothing)."""
        return [kind for kind in self.kinds(task_id) if kind.startswith(("access_request.", "task.")) and kind != "task.review_refused"]


async def _snapshot(store: Store) -> Snapshot:
    tasks: list[TaskRecord] = []
    while page := await store.list_tasks(limit=500, after_id=tasks[-1].id if tasks else None):
        tasks += page
    approvals = {}
    for task in tasks:
        for item in task.items:
            if item.approval_id is not None:
                approval = await store.get_approval(item.approval_id)
                assert approval is not None, f"task {task.id} names approval {item.approval_id}, which is not stored"
                approvals[approval.id] = approval
    events, _head = await stored_chain(store)
    return Snapshot({task.id: task for task in tasks}, approvals, events)


def approve(flow: Flow, task_id: str, *reviewers: str) -> None:
    for reviewer in reviewers:
        response = flow.review(reviewer, task_id, "approve")
        assert response.status_code == 200, response.text


def submit(flow: Flow, key: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """dave asks to deploy billing to prod: (the evaluation, the submission body, the task id)."""
    evaluated = flow.evaluate("dave")
    assert "access_request" in evaluated["decision"]["context"], evaluated
    body = flow.submission(evaluated)
    submitted = flow.submit(body, key=key)
    assert submitted.status_code == 202, submitted.text
    return evaluated, body, submitted.json()["task"]["id"]


def assert_audit_intact(deployment: Deployment) -> int:
    """`arop audit verify` passes; the number of events it checked."""
    verified = deployment.audit_verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return int(verified.stdout.split("audit log intact: ")[1].split()[0])


def assert_whole(snapshot: Snapshot, task_id: str) -> None:
    """The task is not half-written: its status, items, workflow progress, approvals and audit
    events all tell the same story (manager step, owner step, approval per item)."""
    task = snapshot.tasks[task_id]
    state = read_state(task.workflow)
    kinds = snapshot.changes(task_id)
    approvals = [e for e in state.decisions if e.decision == "approve"]
    if task.status == "pending":
        assert all(item.status == "pending" and item.approval_id is None for item in task.items), task
        assert len(approvals) == state.step  # one manager's approval moved it to the owner's step
        assert kinds == [SUBMITTED] + [STEP_APPROVED] * state.step, kinds
    else:
        assert task.status == "approved", task
        assert state.step == 1 and len(approvals) == 2, state
        assert all(item.status == "approved" and item.approval_id in snapshot.approvals for item in task.items), task
        for item in task.items:
            approval = snapshot.approvals[item.approval_id]  # type: ignore[index]
            assert approval.task_id == task_id and approval.state, approval
        assert kinds == [SUBMITTED, STEP_APPROVED, STEP_APPROVED, APPROVED], kinds
        completed = next(e for e in snapshot.audit if e.task_id == task_id and e.kind == APPROVED)
        assert completed.data["approvals"] == [item.approval_id for item in task.items]


# -- a kill at each point of the flow --------------------------------------------------------


def test_a_requestable_denial_issued_before_a_kill_can_be_submitted_after_restart(deployment: Deployment) -> None:
    """The evaluation awaiting submission and the key that signed its binding_token are in the
    store: the PEP submits what it was handed before the crash."""
    with deployment.start() as (server, flow):
        evaluated = flow.evaluate("dave")
        assert "access_request" in evaluated["decision"]["context"], evaluated
        server.kill()
    with deployment.start() as (_, flow):
        submitted = flow.submit(flow.submission(evaluated), key="after-crash")
        assert submitted.status_code == 202, submitted.text


def test_a_submission_acknowledged_before_a_kill_is_pending_after_restart_and_its_retry_gets_the_same_task(deployment: Deployment) -> None:
    with deployment.start() as (server, flow):
        _, body, task_id = submit(flow, key="crash-1")
        before = flow.status(task_id)
        assert before.status_code == 200, before.text
        server.kill()
    with deployment.start() as (_, flow):
        after = flow.status(task_id)
        assert after.status_code == 200, after.text
        assert after.json() == before.json()
        assert after.json()["task"]["status"] == "pending"
        inbox = flow.http.get("/reviewer/v1/tasks", headers=flow.credentials.headers("alice")).json()["tasks"]
        assert task_id in [t["id"] for t in inbox]
        # The PEP never saw the answer? Its retry with the same Idempotency-Key gets the task.
        retried = flow.submit(body, key="crash-1")
        assert retried.status_code == 202, retried.text
        assert retried.json()["task"]["id"] == task_id
    snapshot = deployment.snapshot()
    assert list(snapshot.tasks) == [task_id]
    assert_whole(snapshot, task_id)
    assert assert_audit_intact(deployment) == len(snapshot.audit) == 1


def test_a_step_approval_acknowledged_before_a_kill_is_kept_and_the_owner_completes_the_task_after_restart(deployment: Deployment) -> None:
    with deployment.start() as (server, flow):
        evaluated, _, task_id = submit(flow, key="crash-2")
        approve(flow, task_id, "alice")
        server.kill()
    with deployment.start() as (_, flow):
        task = flow.status(task_id).json()["task"]
        assert task["status"] == "pending" and task["progress"]["current_step"] == 2, task
        # The manager step is done: another manager is no longer asked, the owner is.
        refused = flow.review("bob", task_id, "approve")
        assert refused.status_code == 403 and refused.json()["type"].endswith(":not_an_approver"), refused.text
        detail = flow.http.get(f"/reviewer/v1/tasks/{task_id}", headers=flow.credentials.headers(OWNER)).json()
        assert [(d["approver"]["id"], d["decision"]) for d in detail["decisions"]] == [("alice", "approve")]
        approve(flow, task_id, OWNER)
        answer = flow.status(task_id).json()
        assert answer["task"]["status"] == "approved"
        assert flow.reevaluate(evaluated, answer["result"]["approval"])["decision"] is True
    snapshot = deployment.snapshot()
    assert_whole(snapshot, task_id)
    assert [k for k in snapshot.kinds(task_id) if k != "task.review_refused"] == [SUBMITTED, STEP_APPROVED, STEP_APPROVED, APPROVED, "reevaluation"]
    assert assert_audit_intact(deployment) == len(snapshot.audit)


def test_an_approval_granted_before_a_kill_is_the_same_after_restart_and_still_allows(deployment: Deployment) -> None:
    with deployment.start() as (server, flow):
        evaluated, _, task_id = submit(flow, key="crash-3")
        approve(flow, task_id, "alice", OWNER)
        before = flow.status(task_id)
        approval = before.json()["result"]["approval"]
        assert flow.reevaluate(evaluated, approval)["decision"] is True
        server.kill()
    with deployment.start() as (_, flow):
        after = flow.status(task_id)
        assert after.json()["task"]["status"] == "approved"
        # The same approval, id and signed state byte for byte: nothing was re-issued.
        assert after.json()["result"]["approval"] == approval
        assert after.json() == before.json()
        allowed = flow.reevaluate(evaluated, approval)
        assert allowed["decision"] is True
        assert allowed["context"]["approval"] == {"id": approval["id"], "approved_until": approval["approved_until"]}
    snapshot = deployment.snapshot()
    assert_whole(snapshot, task_id)
    assert snapshot.kinds(task_id)[-2:] == ["reevaluation", "reevaluation"]  # before and after the kill
    assert assert_audit_intact(deployment) == len(snapshot.audit)


# -- a kill while submissions and approvals are in flight ------------------------------------


class Ledger:
    """What the storm's requests were answered, from the client's side: only a 2xx counts as
    acknowledged; a request cut off by the kill has no answer, and may or may not have landed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> submission body
        self.evaluations: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> evaluation
        self.submitted: dict[str, str] = {}  # Idempotency-Key -> task id, acknowledged (202)
        self.unanswered: list[str] = []  # Idempotency-Keys whose submission got no answer
        self.step_approved: dict[str, str] = {}  # task id -> manager, acknowledged (200)
        self.approved: set[str] = set()  # task ids the owner's approval completed (200)
        self.awaiting_manager: list[str] = []
        self.awaiting_owner: list[str] = []
        self.cut_off: list[float] = []  # when the requests the kill left without an answer started
        self.in_flight = 0  # submissions and approvals sent and not yet answered
        self.refusals: Counter[int] = Counter()
        self.unexpected: list[str] = []

    def send(self, request: Callable[[], httpx.Response]) -> httpx.Response | None:
        """The answer to the request, or None when the kill cut it off."""
        with self.lock:
            self.in_flight += 1
        started = time.monotonic()
        try:
            return request()
        except httpx.TransportError:
            with self.lock:
                self.cut_off.append(started)
            return None
        finally:
            with self.lock:
                self.in_flight -= 1

    def run(self, target: Callable[..., None], *args: Any) -> threading.Thread:
        """`target(*args)` in a thread, whose failure the test reports."""

        def guarded() -> None:
            try:
                target(*args)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.unexpected.append(f"{target.__name__}: {exc!r}")

        return threading.Thread(target=guarded)

    def count(self, since_start: bool = False) -> tuple[int, int, int]:
        """How many submissions, manager and owner approvals were acknowledged (`since_start`:
        submissions during the storm only)."""
        with self.lock:
            submitted = sum(key.startswith("storm-") for key in self.submitted) if since_start else len(self.submitted)
            return submitted, len(self.step_approved), len(self.approved)


def _submitter(flow: Flow, ledger: Ledger, name: str, stop: threading.Event) -> None:
    for n in range(10_000):
        if stop.is_set():
            return
        key = f"{name}-{n}"
        try:
            evaluated = flow.evaluate("dave")
        except httpx.TransportError:
            return  # the service is down: nothing to submit
        body = flow.submission(evaluated)
        with ledger.lock:
            ledger.bodies[key], ledger.evaluations[key] = body, evaluated
        answer = ledger.send(partial(flow.submit, body, key=key))
        if answer is None:
            with ledger.lock:
                ledger.unanswered.append(key)
            return
        with ledger.lock:
            if answer.status_code == 202:
                task_id = answer.json()["task"]["id"]
                ledger.submitted[key] = task_id
                ledger.awaiting_manager.append(task_id)
            else:
                ledger.unanswered.append(key)  # its retry settles what became of it
                ledger.unexpected.append(f"submit {key}: {answer.status_code} {answer.text}")


def _approver(flow: Flow, ledger: Ledger, reviewer: str, stop: threading.Event) -> None:
    """Approve every task of the reviewer's queue in turn: the managers (alice and bob) race for
    the first step of each task, the owner takes the second."""
    queue = ledger.awaiting_owner if reviewer == OWNER else ledger.awaiting_manager
    done = 0
    while not stop.is_set():
        with ledger.lock:
            task_id = queue[done] if done < len(queue) else None
        if task_id is None:
            time.sleep(0.01)
            continue
        done += 1
        answer = ledger.send(partial(flow.review, reviewer, task_id, "approve"))
        if answer is None:
            return
        with ledger.lock:
            if answer.status_code == 200 and reviewer == OWNER:
                ledger.approved.add(task_id)
            elif answer.status_code == 200:
                if task_id in ledger.step_approved:
                    ledger.unexpected.append(f"{task_id}: both {ledger.step_approved[task_id]} and {reviewer} approved step 1")
                ledger.step_approved[task_id] = reviewer
                ledger.awaiting_owner.append(task_id)
            elif reviewer != OWNER and answer.status_code in (403, 409):
                ledger.refusals[answer.status_code] += 1  # the other manager was first
            else:
                ledger.unexpected.append(f"{reviewer} approving {task_id}: {answer.status_code} {answer.text}")


def test_a_kill_amid_concurrent_submissions_and_approvals_keeps_every_acknowledged_change_whole_and_audited(
    deployment: Deployment,
) -> None:
    ledger = Ledger()
    stop = threading.Event()
    with deployment.start() as (server, flow):
        # Tasks for the approvers to start on, then submitters and approvers all at once.
        for n in range(4):
            key = f"before-{n}"
            ledger.evaluations[key], ledger.bodies[key], ledger.submitted[key] = submit(flow, key=key)
            ledger.awaiting_manager.append(ledger.submitted[key])
        flows = [Flow(server, deployment.credentials) for _ in range(6)]
        threads = [ledger.run(_submitter, flows[n], ledger, f"storm-{n}", stop) for n in range(3)]
        threads += [ledger.run(_approver, f, ledger, r, stop) for f, r in zip(flows[3:], (*MANAGERS, OWNER))]
        for thread in threads:
            thread.start()
        try:
            # Kill in the middle of it: once some of everything was acknowledged, while changes
            # are in flight, a moment later (before, during or after their commit).
            assert poll(lambda: all(n >= 3 for n in ledger.count(since_start=True)), timeout=60), ledger.count()
            deadline = time.monotonic() + 10
            while ledger.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(random.uniform(0, 0.003))
            killed_at = time.monotonic()
            server.kill()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            for f in flows:
                f.http.close()
    assert not ledger.unexpected, ledger.unexpected
    assert any(started < killed_at for started in ledger.cut_off), "the kill landed while no request was in flight"

    with deployment.start() as (_, flow):
        snapshot = deployment.snapshot()
        # Every acknowledged submission is a task; every acknowledged approval is reflected.
        assert set(ledger.submitted.values()) <= set(snapshot.tasks)
        for task_id in ledger.step_approved:
            task = snapshot.tasks[task_id]
            assert task.status == "approved" or read_state(task.workflow).step == 1, task
            decisions = read_state(task.workflow).decisions
            assert decisions[0].approver.id == ledger.step_approved[task_id], decisions
        for task_id in ledger.approved:
            assert snapshot.tasks[task_id].status == "approved"
        # Nothing half-written, and a task for nobody's submission is not there either.
        for task_id in snapshot.tasks:
            assert_whole(snapshot, task_id)
        assert len(snapshot.tasks) <= len(ledger.submitted) + len(ledger.unanswered)
        # Every audit event belongs to a task and is chained; each acknowledged change has its one event.
        assert {e.task_id for e in snapshot.audit} <= set(snapshot.tasks)
        assert assert_audit_intact(deployment) == len(snapshot.audit)
        kinds = Counter((e.task_id, e.kind) for e in snapshot.audit)
        assert all(kinds[task_id, SUBMITTED] == 1 for task_id in ledger.submitted.values())
        assert all(kinds[task_id, STEP_APPROVED] >= 1 for task_id in ledger.step_approved)
        assert all(kinds[task_id, APPROVED] == 1 for task_id in ledger.approved)

        # The PEP's view after the restart: the same, and retries land on the same tasks.
        for key, task_id in ledger.submitted.items():
            status = flow.status(task_id)
            assert status.status_code == 200 and status.json()["task"]["status"] == snapshot.tasks[task_id].status
            retried = flow.submit(ledger.bodies[key], key=key)
            assert retried.status_code == 202 and retried.json()["task"]["id"] == task_id, retried.text
        # A submission the kill cut off either landed whole or not at all: its retry gets the
        # task that landed, or makes the one task for its key.
        settled = {}
        for key in ledger.unanswered:
            retried = flow.submit(ledger.bodies[key], key=key)
            assert retried.status_code == 202, retried.text
            settled[key] = retried.json()["task"]["id"]
        tasks = set(ledger.submitted.values()) | set(settled.values())
        assert len(tasks) == len(ledger.submitted) + len(settled)
        assert set(deployment.snapshot().tasks) == tasks  # one task per Idempotency-Key, no other
        # Every approval granted before the kill allows at re-evaluation after it.
        for key, task_id in ledger.submitted.items():
            if task_id in ledger.approved:
                approval = flow.status(task_id).json()["result"]["approval"]
                assert flow.reevaluate(ledger.evaluations[key], approval)["decision"] is True
    after = deployment.snapshot()
    assert after.audit[: len(snapshot.audit)] == snapshot.audit
    assert assert_audit_intact(deployment) == len(after.audit)


# -- callbacks -------------------------------------------------------------------------------


def test_a_callback_queued_before_a_kill_is_delivered_after_restart(
    tmp_path: Path, store_url: str, workers: int, credentials: Credentials
) -> None:
    """The approval queues its completion callback in the same transaction; the receiver is
    down (503) until the kill, then up: the restarted service delivers it."""
    ca = TestCA(tmp_path)
    with https_receiver(*ca.issue_server(["127.0.0.1"])) as receiver:
        endpoint = f"https://127.0.0.1:{receiver.port}/arop"
        key, digest = new_api_key()
        extra = (
            f'callback_allow_networks = ["127.0.0.0/8"]\ncallback_ca_file = "{ca.ca_file}"\ncallback_timeout = 2\n\n'
            f'[[callers]]\nname = "hooked"\nkey_sha256 = "{digest}"\nscopes = ["evaluate", "request"]\n'
            f'callback_urls = ["{endpoint}"]\ncallback_secret = "hooked-secret"\n'
        )
        hooked = copy.copy(credentials)  # and a caller of its own that registered the receiver
        hooked.keys = {**credentials.keys, "hooked": key}
        deployment = Deployment(tmp_path / "service", store_url, workers, hooked, extra)
        receiver.default_status = 503
        with deployment.start() as (server, flow):
            evaluated = flow.evaluate("dave", caller="hooked")
            submitted = flow.submit(flow.submission(evaluated, callback={"endpoint": endpoint, "state": "cb-1"}), caller="hooked")
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["task"]["id"]
            approve(flow, task_id, "alice", OWNER)
            assert poll(lambda: len(receiver.received) >= 1, timeout=15), "the callback was never attempted"
            server.kill()
        refused = len(receiver.received)
        receiver.default_status = 200
        with deployment.start():
            assert poll(lambda: len(receiver.received) > refused, timeout=20), "the callback was not retried after the restart"
            body = msgspec.json.decode(receiver.received[-1].body)
            assert body["task"]["id"] == task_id and body["task"]["status"] == "approved" and body["state"] == "cb-1"
            assert poll(lambda: "callback.delivered" in deployment.snapshot().kinds(task_id), timeout=10)
        assert assert_audit_intact(deployment) == len(deployment.snapshot().audit)
