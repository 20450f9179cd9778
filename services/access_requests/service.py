"""The Access Request Service (spec/arap.md §8-§13, §17; DESIGN.md §1 steps 3-4).

The ARAP rules themselves live in `profiles/arap`; this module wires them to the store, the
policy engine, the signing keys and the clock:

- `submit`: a PEP's access request, processed in the order of §8.5 (authorization, shape,
  idempotency, requestability, binding and freshness, callback and actor checks), becomes a
  task routed through the workflow its `@requestable` template names; auto-approvable items
  are approved at once.
- `status` / `cancel`: task-handle operations, each authorized on its own against the bound
  subject (AR-55, AR-62, AR-91), never just "has the id" (AR-98).
- `approve` / `deny` / `comment` and the reviewer views: decisions by people, whose
  eligibility the service decides (AR-96), and whose identities never reach the PEP (AR-93).
- `expire_due`: pending tasks past their expiry or step timeout.

Every change of a task is one store transaction together with its approvals, audit events and
callbacks, written under optimistic concurrency, so replicas and crashes lose nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from profiles.arap.approval import approval_claims, sign_approval_state
from profiles.arap.binding import VerifiedBinding, verify_binding_token
from profiles.arap.callbacks import callback_body, check_callback_uri, wants_event
from profiles.arap.compare import Covered, Target, context_view, relevant_members, strip_act
from profiles.arap.errors import (
    ARAPError,
    BadRequest,
    DuplicateRequest,
    InvalidDenialBinding,
    InvalidTaskState,
    NotRequestable,
    UnknownTask,
)
from profiles.arap.model import (
    Approval,
    Callback,
    Progress,
    Result,
    Submission,
    Task,
    TaskItem,
    TaskLinks,
    TaskResponse,
    format_instant,
    parse_instant,
)
from profiles.arap.recorded import RecordedEvaluation, verify_recorded
from profiles.arap.submission import Coverage, check_shape, coverage_plan, entity_json, request_fingerprint, requested_access
from profiles.arap.tasks import PENDING, REEVALUATE, aggregate_status, cancel, check_retrievable, is_terminal, transition
from profiles.authzen.model import Action, EvaluationRequest, Resource
from profiles.authzen.transport import describe_validation_error
from services.access_requests.delivery import checked_addresses
from services.access_requests.eligibility import Parties, Refusal, RequestView, refusal, selected
from services.access_requests.progress import (
    Note,
    StepDecision,
    WorkflowState,
    narrowest_until,
    read_state,
    step_complete,
    write_state,
)
from services.access_requests.workflows import RISKS, Workflow, parse_duration
from services.auth import Caller, Reviewer
from services.config import Config
from services.keys import KeyRing
from services.pdp.engine import Engine
from services.pdp.runtime import PolicyRuntime
from services.store import Store
from services.store.records import (
    ApprovalRecord,
    AuditDraft,
    CallbackDelivery,
    EntityUid,
    EvaluationRecord,
    IdempotencyClaim,
    TaskItem as StoredItem,
    TaskRecord,
)

log = logging.getLogger("arop.access_requests")
SYSTEM = "arop"
TICKET_SECRET = "access-request-ticket-links"
UNDECIDED = "the request was not decided in time"
MAX_ATTEMPTS = 8  # optimistic-concurrency retries of one task change


class Forbidden(Exception):
    """403: the caller may not submit for this subject (AR-90, §14), or may view but not cancel."""


class ReviewRefused(Exception):
    """403 on the reviewer API: the reviewer may see the task but may not decide it now."""

    def __init__(self, refusal: Refusal | str, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail


class Submitted(msgspec.Struct, frozen=True):
    """A submission's answer: 201 (terminal at once) or 202, the task, and its Location."""

    status: int
    response: TaskResponse
    location: str


class Change(msgspec.Struct):
    """One task change and what must commit with it."""

    task: TaskRecord
    approvals: list[ApprovalRecord] = []
    audit: list[AuditDraft] = []
    callbacks: list[CallbackDelivery] = []


def _token(prefix: str) -> str:
    """Opaque, unguessable identifiers (§9 `task.id`, AR-64 `approval.id`, AR-98)."""
    return prefix + secrets.token_urlsafe(24)


def _uid(entity: dict[str, Any]) -> EntityUid:
    return EntityUid(str(entity.get("type")), str(entity.get("id")))


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else is a 400 (§8.1 Impl)."""
    if not body:
        raise BadRequest("the request body is empty")
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


class AccessRequestService:
    def __init__(self, config: Config, store: Store, runtime: PolicyRuntime, key_ring: KeyRing) -> None:
        self.config = config
        self.store = store
        self.runtime = runtime
        self.key_ring = key_ring
        self.endpoint = config.access_request_endpoint()
        self.ars = config.ars_identifier()
        self.pdp = config.server.base_url()
        self.skew = timedelta(seconds=config.access_requests.clock_skew)
        self._ticket_secret: bytes | None = None

    # -- submission (§8) ------------------------------------------------------------------

    async def submit(self, caller: Caller, body: bytes, idempotency_key: str | None, received: datetime) -> Submitted:
        """`received`: when the submission arrived, to the microsecond. Freshness is judged on
        it (AR-14): rounded down to the second, a denial would stay valid up to a second past
        its expiry plus the configured skew. The task's own instants are whole seconds."""
        now = received.replace(microsecond=0)
        raw, submission = self._decode(body)
        check_shape(submission)
        if not caller.may_act_for(submission.subject.type, submission.subject.id):
            raise Forbidden(f"caller {caller.name!r} may not request access for this subject")
        fingerprint = request_fingerprint(raw)
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                raise BadRequest("Idempotency-Key must be 1 to 255 characters")
            existing = await self.store.idempotent_task(caller.name, idempotency_key, now)
            if existing is not None:
                return await self._replay(caller, existing.task, existing.fingerprint == fingerprint, now)
        engine = self.runtime.current()
        template, policies = self._requestability(engine, submission)
        workflow = engine.bundle.workflows.get(template)
        assert workflow is not None  # bundles refuse @requestable templates without a workflow
        intent = None
        if idempotency_key is not None:
            intent = hashlib.sha256(f"{caller.name}\0{idempotency_key}\0{fingerprint}".encode()).hexdigest()
        plan = coverage_plan(submission)
        bindings = [await self._verify(coverage, intent, received) for coverage in plan]
        await self._check_callback(caller, submission)
        self._check_actor(caller, submission)
        self._check_request_schema(engine, template, raw)
        task = self._new_task(caller, submission, template, workflow, plan, bindings, policies, now)
        task, change = await self._auto_approve(engine, workflow, task, submission, now)
        claim = None
        if idempotency_key is not None:
            retention = timedelta(seconds=self.config.access_requests.retention)
            claim = IdempotencyClaim(caller=caller.name, key=idempotency_key, fingerprint=fingerprint, expires_at=task.expires_at + retention)
        created = await self.store.create_task(
            task, idempotency=claim, approvals=change.approvals, audit=change.audit, callbacks=change.callbacks
        )
        if not created.created:
            return await self._replay(caller, created.task, created.same_body, now)
        return Submitted(read_state(task.workflow).responded, await self.view(task, caller, now), self._status_url(task.id))

    def _decode(self, body: bytes) -> tuple[dict[str, Any], Submission]:
        raw = json_object(body)
        if _depth(raw) > self.config.server.max_json_depth:
            raise BadRequest(f"the request body nests deeper than {self.config.server.max_json_depth} levels")
        try:
            return raw, msgspec.convert(raw, Submission)
        except msgspec.ValidationError as exc:
            raise BadRequest(describe_validation_error(exc)) from None

    async def _replay(self, caller: Caller, task: TaskRecord, same_body: bool, now: datetime) -> Submitted:
        """AR-46/AR-47: the same key and an equivalent body get the original task and status
        code; a different body is `duplicate_request`."""
        if not same_body:
            raise DuplicateRequest("this Idempotency-Key was used with a different request body")
        return Submitted(read_state(task.workflow).responded, await self.view(task, caller, now), self._status_url(task.id))

    def _requestability(self, engine: Engine, submission: Submission) -> tuple[str, list[str]]:
        """AR-43, AR-95: the access must be requestable now, by current policy: for every item,
        standing access denies, no forbid matched, and a `@requestable` permit would allow.
        The template comes from those permits (the PEP's `denial.template` only picks among
        them). A bundle goes through one workflow."""
        requests = [
            EvaluationRequest(submission.subject, action, resource, submission.context)
            for resource, action in self._targets(submission)
        ]
        common: list[str] | None = None
        policies: list[str] = []
        for outcome in engine.evaluate(requests):
            if outcome.allowed:
                raise NotRequestable("the access is already granted: nothing to request")
            if outcome.reason != "no_matching_permit" or not outcome.requestable:
                raise NotRequestable("the access is not requestable under current policy")
            templates = [p.requestable for p in outcome.requestable if p.requestable]
            common = templates if common is None else [t for t in common if t in templates]
            policies += [p.id for p in outcome.requestable if p.id not in policies]
        if not common:
            raise NotRequestable("the items are not requestable through one workflow; submit them separately")
        wanted = [d.template for d in self._denials(submission) if d.template]
        template = next((t for t in wanted if t in common), common[0])
        return template, policies

    @staticmethod
    def _targets(submission: Submission) -> list[tuple[Resource, Action]]:
        if submission.items:
            return [(item.resource, item.action) for item in submission.items]
        assert submission.resource is not None and submission.action is not None
        return [(submission.resource, submission.action)]

    @staticmethod
    def _denials(submission: Submission) -> list[Any]:
        found = [submission.denial] if submission.denial else []
        return found + [item.denial for item in submission.items or () if item.denial]

    async def _verify(self, coverage: Coverage, intent: str | None, now: datetime) -> VerifiedBinding:
        """§5 / §5.1: a token is verified in the order of AR-26; its `jti` is remembered in the
        store (replays across replicas), accepting an idempotent retry of the same submission
        (§8.6 Impl). Without a token, the recorded evaluation is resolved (AR-30)."""
        denial = coverage.denial
        if not denial.binding_token:
            record = await self.store.get_evaluation(denial.evaluation_id or "")
            return verify_recorded(_recorded(record), coverage.covered, now=now, skew=self.skew)
        presented: list[tuple[str, datetime]] = []
        failure: ARAPError | None = None
        binding: VerifiedBinding | None = None
        try:
            binding = verify_binding_token(
                denial,
                coverage.covered,
                resolve_key=await self.key_ring.resolver(denial.binding_token, frozenset({self.pdp})),
                audience=self.ars,
                now=now,
                skew=self.skew,
                seen_jti=lambda jti, until: presented.append((jti, until)) is not None,
            )
        except ARAPError as exc:
            failure = exc
        # The jti check is step 3 of AR-26: it outranks what steps 4 and 5 found, and the jti
        # is consumed even when they failed (D-ARAP-5).
        for jti, until in presented:
            if not await self.store.claim_token_id(jti, intent, until, now):
                raise InvalidDenialBinding("binding_token was already presented (jti replay)")
        if failure is not None:
            raise failure
        assert binding is not None
        return binding

    async def _check_callback(self, caller: Caller, submission: Submission) -> None:
        """AR-77/AR-78: a registered https endpoint resolving to allowed addresses, and a secret
        to authenticate the callback with."""
        if submission.callback is None:
            return
        registration = self._caller_config(caller.name)
        if registration is None or not registration.callback_secret:
            raise BadRequest("callbacks are not configured for this caller (no registered endpoint and secret)")
        check_callback_uri(submission.callback.endpoint, registration.callback_urls)
        await checked_addresses(submission.callback.endpoint, self.config.access_requests.callback_allow_networks)

    def _caller_config(self, name: str) -> Any:
        return next((c for c in self.config.callers if c.name == name), None)

    def _check_actor(self, caller: Caller, submission: Submission) -> None:
        """AR-92: a claimed delegation chain must be vouched for by the caller's credential.
        A caller configured with `vouches_for_actors` authenticated the actor itself (an AS
        that validated an RFC 8693 token); any other caller's `client.actor` is refused."""
        client = submission.client
        if client is None or client.actor is None:
            return
        registration = self._caller_config(caller.name)
        if registration is None or not registration.vouches_for_actors:
            raise Forbidden("client.actor is not verifiable for this caller (AR-92)")

    def _check_request_schema(self, engine: Engine, template: str, raw: dict[str, Any]) -> None:
        """The workflow's `request_schema` (served at `request_schema_url`): what a submission
        must add (§7, AR-33)."""
        schema = engine.bundle.workflows.request_schemas.get(template)
        if schema is None:
            return
        import jsonschema  # only bundles with request schemas pay for it (and attrs under it)

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(raw))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
            raise BadRequest(f"{where or 'the request'}: {error.message} (see the request schema of {template!r})")

    def _new_task(
        self,
        caller: Caller,
        submission: Submission,
        template: str,
        workflow: Workflow,
        plan: Sequence[Coverage],
        bindings: Sequence[VerifiedBinding],
        policies: list[str],
        now: datetime,
    ) -> TaskRecord:
        """AR-44: the task bound to Subject, Resource, Action, Context, denial, requester, client."""
        evaluation_ids: dict[int, str] = {}
        members: set[str] = set()
        for coverage, binding in zip(plan, bindings):
            members.update(binding.members or ())
            if binding.evaluation_id and len(coverage.items) <= 1:  # an item's own denial
                evaluation_ids[coverage.items[0] if coverage.items else 0] = binding.evaluation_id
        items = []
        for index, (resource, action) in enumerate(self._targets(submission)):
            wanted = requested_access(submission, index if submission.items else None)
            if wanted.requested_until is not None and wanted.requested_until <= now:
                raise BadRequest("requested_access.requested_until is in the past")
            stored: dict[str, Any] = {**wanted.extensions, "emergency": wanted.emergency}
            if wanted.requested_until is not None:
                stored["requested_until"] = format_instant(wanted.requested_until)
            items.append(StoredItem(resource=entity_json(resource), action=entity_json(action), evaluation_id=evaluation_ids.get(index), requested_access=stored))
        return TaskRecord(
            id=_token("arq_"),
            status=PENDING,
            requester=caller.name,
            subject=entity_json(submission.subject),
            context=submission.context or {},
            context_members=relevant_members(members),
            items=items,
            bundle=submission.items is not None,
            template=template,
            requested_access=submission.requested_access or {},
            client=msgspec.to_builtins(submission.client) if submission.client else None,
            callback=msgspec.to_builtins(submission.callback) if submission.callback else None,
            workflow=write_state(WorkflowState(step_started_at=now, policies=policies)),
            created_at=now,
            updated_at=now,
            expires_at=now + parse_duration(workflow.request_ttl, "request_ttl"),
        )

    async def _auto_approve(
        self, engine: Engine, workflow: Workflow, task: TaskRecord, submission: Submission, now: datetime
    ) -> tuple[TaskRecord, Change]:
        """The workflow's auto-approval condition, per item: approved at once, still audited
        (and still re-evaluated by the PDP at use, AR-71). All approved: 201 (AR-51)."""
        audit = [self._audit(now, "access_request.submitted", task.requester, task, self._submission_facts(task, submission))]
        approve = [
            index
            for index, item in enumerate(task.items)
            if workflow.auto_approve
            and engine.auto_approved(
                task.template,
                EvaluationRequest(submission.subject, msgspec.convert(item.action, Action), msgspec.convert(item.resource, Resource), task.context or None),
            )
        ]
        if not approve:
            return task, Change(task, audit=audit)
        change = await self._complete(task, workflow, approve, now, actor=SYSTEM, until=None, kind="task.auto_approved")
        state = read_state(change.task.workflow)
        if is_terminal(change.task.status):
            state.responded = 201
        # Still the first version: it is created in this state, in one transaction.
        change.task = msgspec.structs.replace(change.task, workflow=write_state(state), version=task.version)
        change.audit = audit + change.audit
        return change.task, change

    @staticmethod
    def _submission_facts(task: TaskRecord, submission: Submission) -> dict[str, Any]:
        """What the audit keeps of a submission (AR-89): enough to reconstruct it."""
        return {
            "template": task.template,
            "subject": task.subject,
            "items": [{"resource": i.resource, "action": i.action, "evaluation_id": i.evaluation_id} for i in task.items],
            "context": task.context,
            "context_members": task.context_members,
            "requested_access": task.requested_access,
            "client": task.client,  # audit metadata unless verified (AR-42)
            "denials": [msgspec.to_builtins(d) for d in AccessRequestService._denials(submission)],
            "emergency": any(i.requested_access.get("emergency") for i in task.items),
        }

    # -- task handle operations (§10, §11) ------------------------------------------------

    async def _visible_task(self, caller: Caller, task_id: str, now: datetime) -> TaskRecord:
        """AR-91/AR-98 and §14 Impl: a task the caller may not see is `unknown_task` (404), so a
        handle reveals nothing. Past its expiry a pending task is expired first (its callback
        fires), then the handle answers 410 `task_expired` (D-ARAP-14)."""
        task = await self.store.get_task(task_id)
        if task is None or not caller.may_act_for(str(task.subject.get("type")), str(task.subject.get("id"))):
            raise UnknownTask("no such task")
        task = await self._expired_if_due(task, now)
        check_retrievable(format_instant(task.expires_at), now)
        return task

    async def status(self, caller: Caller, task_id: str, now: datetime) -> TaskResponse:
        return await self.view(await self._visible_task(caller, task_id, now), caller, now)

    async def cancel(self, caller: Caller, task_id: str, body: dict[str, Any], now: datetime) -> TaskResponse:
        """AR-60..AR-62: pending items become cancelled; nothing pending is 409. Cancelling is a
        right of its own (`cancel` scope): seeing a task does not imply it."""
        await self._visible_task(caller, task_id, now)
        if "cancel" not in caller.scopes:
            raise Forbidden(f"caller {caller.name!r} may not cancel access requests (needs scope 'cancel')")
        reason = body.get("reason") if isinstance(body.get("reason"), str) else None

        def cancelled(task: TaskRecord) -> Change:
            statuses = cancel([item.status for item in task.items])
            task = self._with_statuses(task, statuses, now)
            state = read_state(task.workflow)
            state.closed_reason = reason or "cancelled"
            task.workflow = write_state(state)
            facts = {"reason": reason, "comment": body.get("comment") if isinstance(body.get("comment"), str) else None}
            return Change(task, audit=[self._audit(now, "task.cancelled", caller.name, task, facts)], callbacks=self._callbacks(task, now))

        task = await self._change(task_id, cancelled)
        return await self.view(task, caller, now)

    def _with_statuses(self, task: TaskRecord, statuses: Sequence[str], now: datetime) -> TaskRecord:
        items = [msgspec.structs.replace(item, status=status) for item, status in zip(task.items, statuses)]
        status = aggregate_status(statuses)
        expires_at = task.expires_at
        if is_terminal(status):
            # AR-59: a terminal task stays retrievable for the retention period.
            expires_at = max(expires_at, now + timedelta(seconds=self.config.access_requests.retention))
        return msgspec.structs.replace(task, items=items, status=status, updated_at=now, expires_at=expires_at, version=task.version + 1)

    async def view(self, task: TaskRecord, caller: Caller | None, now: datetime) -> TaskResponse:
        """The task as the PEP sees it (§9): status, progress without approver identities
        (AR-93), links, per-item outcomes. Approvals are an enforceable result and go only to
        the requester they are bound to (AR-91)."""
        workflow = self.runtime.current().bundle.workflows.get(task.template)
        approvals: dict[str, ApprovalRecord] = {}
        if caller is not None and caller.name == task.requester:
            for item in task.items:
                if item.status == "approved" and item.approval_id:
                    record = await self.store.get_approval(item.approval_id)
                    if record is not None:
                        approvals[item.approval_id] = record
        results = [_result(approvals.get(item.approval_id or "")) if item.status == "approved" else None for item in task.items]
        progress = None
        if task.status == PENDING and workflow is not None:
            state = read_state(task.workflow)
            step = workflow.steps[min(state.step, len(workflow.steps) - 1)]
            progress = Progress(current_step=state.step + 1, total_steps=len(workflow.steps), step_name=step.name)
        status_url = self._status_url(task.id)
        wire = Task(
            id=task.id,
            status=task.status,
            status_endpoint=status_url,
            expires_at=format_instant(task.expires_at),
            progress=progress,
            display={"title": workflow.title} if workflow is not None and workflow.title else None,
            links=TaskLinks(
                cancel=f"{status_url}/cancel", review=f"{self.pdp}/reviewer/v1/tasks/{task.id}", ticket=await self._ticket_url(task.id)
            ),
            items=[
                TaskItem(resource=msgspec.convert(i.resource, Resource), action=msgspec.convert(i.action, Action), status=i.status, result=r)
                for i, r in zip(task.items, results)
            ]
            if task.bundle
            else None,
        )
        # AR-54/AR-58: a bundle's approvals are per item, never top-level.
        return TaskResponse(task=wire, result=None if task.bundle else results[0])

    def _status_url(self, task_id: str) -> str:
        return f"{self.endpoint}/{task_id}"

    # -- the requester's ticket (§9 `links.ticket`, AR-99) ---------------------------------------

    async def _ticket_key(self) -> bytes:
        if self._ticket_secret is None:
            self._ticket_secret = await self.store.get_or_create_secret(TICKET_SECRET, secrets.token_bytes(32))
        return self._ticket_secret

    async def _ticket_url(self, task_id: str) -> str:
        """A link a PEP may hand to the end user instead of the status endpoint (AR-99): a
        capability of its own (HMAC of the task id), showing progress but never the approval,
        approver identities or policy details."""
        return f"{self.pdp}/tickets/{task_id}/{_ticket_mac(await self._ticket_key(), task_id)}"

    async def ticket(self, task_id: str, mac: str, now: datetime) -> dict[str, Any]:
        key = await self._ticket_key()
        task = await self.store.get_task(task_id)
        if task is None or not hmac.compare_digest(mac.encode(), _ticket_mac(key, task_id).encode()):
            raise UnknownTask("no such ticket")
        check_retrievable(format_instant(task.expires_at), now)
        workflow = self.runtime.current().bundle.workflows.get(task.template)
        view = {
            "title": workflow.title if workflow and workflow.title else task.template,
            "status": task.status,
            "created_at": format_instant(task.created_at),
            "expires_at": format_instant(task.expires_at),
        }
        if task.status == PENDING and workflow is not None:
            state = read_state(task.workflow)
            view["step"] = {"current": state.step + 1, "total": len(workflow.steps), "name": workflow.steps[state.step].name}
        return view

    # -- reviewers (AR-96, AR-93) -------------------------------------------------------------

    def _parties(self, task: TaskRecord) -> Parties:
        """The subject, every actor named in the chain (subject `act`, `client.actor` and its
        `act` links) and the submitting caller: none of them approves (AR-96 Impl)."""
        actors: set[str] = set()
        chain = (task.subject.get("properties") or {}).get("act")
        client_actor = (task.client or {}).get("actor")
        if isinstance(client_actor, dict) and isinstance(client_actor.get("id"), str):
            actors.add(client_actor["id"])
            chain = [chain, client_actor.get("act")]
        pending = [chain]
        while pending:
            link = pending.pop()
            if isinstance(link, list):
                pending.extend(link)
            elif isinstance(link, dict):
                for name in ("sub", "id"):
                    if isinstance(link.get(name), str):
                        actors.add(link[name])
                pending.append(link.get("act"))
        return Parties(subject=_uid(task.subject), actors=frozenset(actors), requester=task.requester)

    def _views(self, task: TaskRecord) -> list[RequestView]:
        """Per item, the subject and resource attributes approver selectors read: stored
        attributes with the request's properties over them."""
        index = self.runtime.current().index

        def attributes(entity: dict[str, Any]) -> dict[str, Any]:
            stored = index.records.get(_uid(entity))
            return {**(stored.properties if stored else {}), **(entity.get("properties") or {})}

        subject = attributes(task.subject)
        return [RequestView(subject=subject, resource=attributes(item.resource)) for item in task.items]

    def _refusal(self, reviewer: Reviewer, task: TaskRecord, workflow: Workflow, state: WorkflowState) -> Refusal | None:
        """AR-96: the reviewer must be eligible for the current step for every pending item."""
        who = EntityUid(reviewer.entity_type, reviewer.entity_id)
        index = self.runtime.current().index
        parties, decided = self._parties(task), state.decided()
        for item, view in zip(task.items, self._views(task)):
            if item.status != PENDING:
                continue
            found = refusal(who, workflow=workflow, step_index=state.step, parties=parties, view=view, index=index, decided=decided, escalated=state.step in state.escalated)
            if found is not None:
                return found
        return None

    def _involved(self, reviewer: Reviewer, task: TaskRecord, workflow: Workflow | None) -> bool:
        """Reviewers see a task they are (or were) an approver of at some step, or decided."""
        who = EntityUid(reviewer.entity_type, reviewer.entity_id)
        state = read_state(task.workflow)
        if any(d.approver == who for d in state.decisions):
            return True
        if workflow is None:
            return False
        index = self.runtime.current().index
        candidates = [s for step in workflow.steps for s in (*step.approvers, *step.escalate_to)]
        return any(who in selected(candidates, view, index) for view in self._views(task))

    async def _scan(self, keep: Callable[[TaskRecord], bool], *, status: str | None = None, limit: int = 200, newest_first: bool = False) -> list[dict[str, Any]]:
        """Summaries of up to `limit` tasks `keep` accepts, walking the store page by page in id
        order, then sorted by creation time."""
        found: list[TaskRecord] = []
        after: str | None = None
        while len(found) < limit:
            page = await self.store.list_tasks(status=status, limit=200, after_id=after)
            if not page:
                break
            after = page[-1].id
            found += [task for task in page if keep(task)]
        workflows = self.runtime.current().bundle.workflows
        tasks = sorted(found[:limit], key=lambda t: t.created_at, reverse=newest_first)
        return [self._summary(task, workflows.get(task.template)) for task in tasks]

    async def inbox(self, reviewer: Reviewer, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Pending tasks the reviewer may decide now, oldest first."""
        workflows = self.runtime.current().bundle.workflows

        def decidable(task: TaskRecord) -> bool:
            workflow = workflows.get(task.template)
            if workflow is None or now >= task.expires_at:
                return False
            return self._refusal(reviewer, task, workflow, read_state(task.workflow)) is None

        return await self._scan(decidable, status=PENDING, limit=limit)

    async def requests_of(self, person: Reviewer, limit: int = 200) -> list[dict[str, Any]]:
        """The requester's view: the tasks whose subject is this person, newest first."""
        return await self._scan(lambda task: _is_subject(task, person), limit=limit, newest_first=True)

    async def search(self, query: str, status: str | None, limit: int = 200) -> list[dict[str, Any]]:
        """The administrator's view: every task (optionally of one status) whose id, template,
        requester, subject or resources contain `query` (case-insensitive), newest first."""
        needle = query.strip().lower()

        def matches(task: TaskRecord) -> bool:
            if not needle:
                return True
            names = [task.id, task.template, task.requester, _entity_text(task.subject)]
            names += [_entity_text(item.resource) for item in task.items]
            return any(needle in name.lower() for name in names)

        return await self._scan(matches, status=status, limit=limit, newest_first=True)

    async def audit_trail(self, task_id: str) -> list[dict[str, Any]]:
        """The task's audit events, oldest first (shown to those who may see the task)."""
        events = await self.store.audit_events(task_id=task_id, limit=500)
        return [{"at": format_instant(e.at), "kind": e.kind, "actor": e.actor, "data": e.data} for e in events]

    def _summary(self, task: TaskRecord, workflow: Workflow | None) -> dict[str, Any]:
        state = read_state(task.workflow)
        emergency = any(i.requested_access.get("emergency") for i in task.items)
        return {
            "id": task.id,
            "status": task.status,
            "template": task.template,
            "title": workflow.title if workflow else task.template,
            "subject": task.subject,
            "items": [{"resource": i.resource, "action": i.action, "status": i.status} for i in task.items],
            "justification": task.context.get("business_justification"),
            "emergency": emergency,
            "risk": _risk(workflow, emergency),
            "created_at": format_instant(task.created_at),
            "expires_at": format_instant(task.expires_at),
            "step": state.step + 1 if task.status == PENDING else None,
        }

    async def detail(self, reviewer: Reviewer, task_id: str, now: datetime, *, admin: bool = False) -> dict[str, Any]:
        """What a reviewer needs to decide (DESIGN.md §3 "Reviewer UI"): who (subject and the
        acting chain), what, why (justification, requestable policies, template), history, and
        whether they may decide now and until when at most. An administrator sees every task;
        seeing one does not make them eligible to decide it."""
        task, workflow = await self._reviewable(reviewer, task_id, now, admin=admin)
        state = read_state(task.workflow)
        refused = self._refusal(reviewer, task, workflow, state) if task.status == PENDING and workflow else "not_pending"
        detail = self._summary(task, workflow)
        detail.update(
            {
                "description": workflow.description if workflow else "",
                "context": task.context,
                "requested_access": task.requested_access,
                "client": task.client,
                "requester": task.requester,
                "policies": state.policies,
                "steps": [{"name": s.name, "quorum": s.quorum} for s in workflow.steps] if workflow else [],
                "decisions": [{**msgspec.to_builtins(d), "step": d.step + 1} for d in state.decisions],
                "comments": [msgspec.to_builtins(c) for c in state.comments],
                "can_decide": refused is None,
                "refusal": refused,
                "max_approved_until": format_instant(self._approval_cap(task, workflow, state, now)) if workflow else None,
            }
        )
        return detail

    async def _reviewable(self, reviewer: Reviewer, task_id: str, now: datetime, *, admin: bool = False) -> tuple[TaskRecord, Workflow]:
        """A task the reviewer is involved in or the subject of (an administrator: any); one
        past its expiry is expired first, so its callback fires and nobody decides it (AR-87)."""
        task = await self.store.get_task(task_id)
        workflow = self.runtime.current().bundle.workflows.get(task.template) if task else None
        # The request's own subject follows it too (the UI's "my requests"); being its subject
        # is a refusal to decide it (self-approval), so seeing it grants nothing more.
        if task is None or workflow is None or not (admin or _is_subject(task, reviewer) or self._involved(reviewer, task, workflow)):
            raise UnknownTask("no such task")
        return await self._expired_if_due(task, now), workflow

    async def approve(self, reviewer: Reviewer, task_id: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        """One eligible approval of the current step; the last one needed completes the task."""
        until = _optional_instant(body, "approved_until")
        comment = _optional_text(body, "comment")
        await self._reviewable(reviewer, task_id, now)

        def approved(task: TaskRecord) -> Change | Awaitable[Change]:
            workflow, state = self._decidable(reviewer, task, now)
            cap = self._approval_cap(task, workflow, state, now)
            if until is not None and not now < until <= cap:
                raise BadRequest(f"approved_until must be after now and at most {format_instant(cap)}")
            who = EntityUid(reviewer.entity_type, reviewer.entity_id)
            state.decisions.append(StepDecision(step=state.step, approver=who, decision="approve", at=now, comment=comment, approved_until=until))
            audit = self._audit(now, "task.step_approved", reviewer.name, task, {"step": state.step + 1, "approver": msgspec.to_builtins(who), "approved_until": until and format_instant(until), "comment": comment})
            if not step_complete(workflow, state, state.step):
                task = self._next_version(task, state, now)
                return Change(task, audit=[audit])
            if state.step + 1 < len(workflow.steps):
                state.step += 1
                state.step_started_at = now
                task = self._next_version(task, state, now)
                return Change(task, audit=[audit])
            task = self._next_version(task, state, now, bump=False)
            pending = [i for i, item in enumerate(task.items) if item.status == PENDING]
            return self._complete_async(task, workflow, pending, now, reviewer.name, audit)

        task = await self._decide(reviewer, task_id, approved, "approve", now)
        return await self.detail(reviewer, task.id, now)

    async def _complete_async(self, task: TaskRecord, workflow: Workflow, items: list[int], now: datetime, actor: str, audit: AuditDraft) -> Change:
        change = await self._complete(task, workflow, items, now, actor=actor, until=narrowest_until(read_state(task.workflow)), kind="task.approved")
        change.audit.insert(0, audit)
        return change

    async def deny(self, reviewer: Reviewer, task_id: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        """An eligible denial denies every pending item (AR-57)."""
        reason = _optional_text(body, "reason")
        if not reason:
            raise BadRequest("reason is required to deny")
        comment = _optional_text(body, "comment")
        await self._reviewable(reviewer, task_id, now)

        def denied(task: TaskRecord) -> Change:
            _, state = self._decidable(reviewer, task, now)
            who = EntityUid(reviewer.entity_type, reviewer.entity_id)
            state.decisions.append(StepDecision(step=state.step, approver=who, decision="deny", at=now, comment=comment, reason=reason))
            state.closed_reason = reason
            task = msgspec.structs.replace(task, workflow=write_state(state))
            task = self._with_statuses(task, [transition(i.status, "denied") if i.status == PENDING else i.status for i in task.items], now)
            facts = {"step": state.step + 1, "approver": msgspec.to_builtins(who), "reason": reason, "comment": comment}
            return Change(task, audit=[self._audit(now, "task.denied", reviewer.name, task, facts)], callbacks=self._callbacks(task, now))

        task = await self._decide(reviewer, task_id, denied, "deny", now)
        return await self.detail(reviewer, task.id, now)

    async def comment(self, reviewer: Reviewer, task_id: str, body: dict[str, Any], now: datetime, *, admin: bool = False) -> dict[str, Any]:
        """A note on the task by anyone who may see it."""
        text = _optional_text(body, "comment")
        if not text:
            raise BadRequest("comment is required")
        await self._reviewable(reviewer, task_id, now, admin=admin)

        def commented(task: TaskRecord) -> Change:
            state = read_state(task.workflow)
            who = EntityUid(reviewer.entity_type, reviewer.entity_id)
            state.comments.append(Note(by=who, at=now, text=text))
            task = self._next_version(task, state, now)
            return Change(task, audit=[self._audit(now, "task.comment", reviewer.name, task, {"by": msgspec.to_builtins(who), "comment": text})])

        task = await self._change(task_id, commented)
        return await self.detail(reviewer, task.id, now, admin=admin)

    async def _decide(self, reviewer: Reviewer, task_id: str, change: Callable[[TaskRecord], Any], verb: str, now: datetime) -> TaskRecord:
        """Apply a reviewer's decision. An ineligible attempt (a party approving its own
        request, a second step by the same person) is a security event: audited, then refused."""
        try:
            task: TaskRecord = await self._change(task_id, change)
            return task
        except ReviewRefused as refused:
            who = {"type": reviewer.entity_type, "id": reviewer.entity_id}
            data = {"verb": verb, "refusal": refused.refusal, "reviewer": who}
            await self.store.append_audit([AuditDraft(at=now, kind="task.review_refused", actor=reviewer.name, task_id=task_id, data=data)])
            raise

    def _decidable(self, reviewer: Reviewer, task: TaskRecord, now: datetime) -> tuple[Workflow, WorkflowState]:
        """A pending, unexpired task the reviewer is eligible to decide now. Expiry is checked
        here, not left to the worker: a task past `expires_at` that no sweep has expired yet
        must not be approved (AR-87, D-ARAP-14)."""
        workflow = self.runtime.current().bundle.workflows.get(task.template)
        if task.status != PENDING or workflow is None:
            raise InvalidTaskState(f"the task is {task.status}")
        if now >= task.expires_at:
            raise InvalidTaskState("the task expired")
        state = read_state(task.workflow)
        found = self._refusal(reviewer, task, workflow, state)
        if found is not None:
            raise ReviewRefused(found, _REFUSALS[found])
        return workflow, state

    @staticmethod
    def _next_version(task: TaskRecord, state: WorkflowState, now: datetime, bump: bool = True) -> TaskRecord:
        return msgspec.structs.replace(task, workflow=write_state(state), updated_at=now, version=task.version + (1 if bump else 0))

    def _approval_cap(self, task: TaskRecord, workflow: Workflow, state: WorkflowState, now: datetime) -> datetime:
        """The latest `approved_until` possible now: the workflow's maximum duration, what the
        requester asked for (`requested_until`), and every approver's narrowing."""
        cap = now + parse_duration(workflow.max_approval, "max_approval")
        for item in task.items:
            requested = item.requested_access.get("requested_until")
            if requested is not None:
                cap = min(cap, parse_instant(requested))
        narrowed = narrowest_until(state)
        return min(cap, narrowed) if narrowed else cap

    async def _complete(
        self, task: TaskRecord, workflow: Workflow, items: list[int], now: datetime, *, actor: str, until: datetime | None, kind: str
    ) -> Change:
        """Approve `items`: one approval per item with its signed state (AR-64, AR-69, AR-70),
        bound to the item's exact scope and the requester; the task's version moves once."""
        state = read_state(task.workflow)
        approved_until = self._approval_cap(task, workflow, state, now)
        if until is not None:
            approved_until = min(approved_until, until)
        # Whole seconds, rounded down: the signed state's `exp` is a NumericDate, and the
        # approval object and the state must name the same instant (D-ARAP-11).
        approved_until = approved_until.replace(microsecond=0)
        if approved_until <= now:
            raise BadRequest("the approval would already have expired (requested_until or max_approval)")
        key = await self.key_ring.current()
        members = task.context_members
        approvals: list[ApprovalRecord] = []
        stored_items = list(task.items)
        for index in items:
            item = stored_items[index]
            approval_id = _token("apr_")
            covered = Covered(task.subject, task.context, (Target(item.resource, item.action),))
            claims = approval_claims(
                issuer=self.ars, audience=self.pdp, approval_id=approval_id, task_id=task.id, covered=covered, members=members,
                approved_until=approved_until, now=now, evaluation_id=item.evaluation_id, requester=task.requester,
            )
            claims["template"] = task.template
            approvals.append(
                ApprovalRecord(
                    id=approval_id, task_id=task.id, item_index=index, evaluation_id=item.evaluation_id,
                    subject=strip_act(task.subject), resource=item.resource, action=item.action,
                    context_members=members, context_values=context_view(task.context, members),
                    requester=task.requester, template=task.template, approved_at=now, approved_until=approved_until,
                    state=sign_approval_state(claims, key),
                )
            )
            stored_items[index] = msgspec.structs.replace(item, status=transition(item.status, "approved"), approval_id=approval_id)
        task = msgspec.structs.replace(task, items=stored_items)
        task = self._with_statuses(task, [i.status for i in stored_items], now)
        facts = {"items": items, "approvals": [a.id for a in approvals], "approved_until": format_instant(approved_until)}
        audit = [self._audit(now, kind, actor, task, facts)]
        return Change(task, approvals=approvals, audit=audit, callbacks=self._callbacks(task, now))

    # -- expiry (AR-87) -------------------------------------------------------------------

    async def expire_due(self, now: datetime) -> int:
        """Expire pending tasks past `expires_at`, and act on step timeouts (expire or
        escalate). Safe on every replica at once: each change is version-checked."""
        changed = 0
        for task in await self.store.list_tasks(status=PENDING, expires_before=now, limit=500):
            changed += await self._expire(task.id, now, UNDECIDED) is not None
        workflows = self.runtime.current().bundle.workflows
        after: str | None = None
        while page := await self.store.list_tasks(status=PENDING, limit=500, after_id=after):
            after = page[-1].id
            for task in page:
                workflow = workflows.get(task.template)
                if workflow is None:
                    continue
                state = read_state(task.workflow)
                step = workflow.steps[state.step]
                if step.timeout is None or state.step in state.escalated:
                    continue
                if now < state.step_started_at + parse_duration(step.timeout, "timeout"):
                    continue
                if step.on_timeout == "escalate":
                    changed += await self._escalate(task.id, state.step, now)
                else:
                    changed += await self._expire(task.id, now, f"step {step.name!r} timed out") is not None
        return changed

    async def _expired_if_due(self, task: TaskRecord, now: datetime) -> TaskRecord:
        """A pending task past its `expires_at` is expired now (its callback fires), whether or
        not a worker sweep came by first (AR-87, D-ARAP-14)."""
        if task.status == PENDING and now >= task.expires_at:
            return await self._expire(task.id, now, UNDECIDED) or task
        return task

    async def _expire(self, task_id: str, now: datetime, why: str) -> TaskRecord | None:
        def expired(task: TaskRecord) -> Change | None:
            if task.status != PENDING:
                return None
            handle_ends = task.expires_at
            task = self._with_statuses(task, [transition(i.status, "expired") if i.status == PENDING else i.status for i in task.items], now)
            if now >= handle_ends:
                # D-ARAP-14: past `task.expires_at` the handle answers 410 `task_expired`. The
                # task still becomes `expired` (audit, callback), but the retention a terminal
                # task gets must not revive a handle that has run out.
                task.expires_at = handle_ends
            state = read_state(task.workflow)
            state.closed_reason = why
            task.workflow = write_state(state)
            return Change(task, audit=[self._audit(now, "task.expired", SYSTEM, task, {"why": why})], callbacks=self._callbacks(task, now))

        return await self._change(task_id, expired, missing_ok=True)

    async def _escalate(self, task_id: str, step: int, now: datetime) -> int:
        def escalated(task: TaskRecord) -> Change | None:
            state = read_state(task.workflow)
            if task.status != PENDING or state.step != step or step in state.escalated:
                return None
            state.escalated.append(step)
            state.step_started_at = now
            task = self._next_version(task, state, now)
            return Change(task, audit=[self._audit(now, "task.escalated", SYSTEM, task, {"step": step + 1})])

        return int(await self._change(task_id, escalated, missing_ok=True) is not None)

    # -- plumbing -------------------------------------------------------------------------

    async def _change(self, task_id: str, change: Callable[[TaskRecord], Any], *, missing_ok: bool = False) -> Any:
        """Apply `change` to the current task and write it if nobody else changed the task
        meanwhile; otherwise read again and retry. `change` may return None (nothing to do)."""
        for _ in range(MAX_ATTEMPTS):
            task = await self.store.get_task(task_id)
            if task is None:
                if missing_ok:
                    return None
                raise UnknownTask("no such task")
            expected = task.version
            outcome = change(task)
            if outcome is not None and not isinstance(outcome, Change):
                outcome = await outcome
            if outcome is None:
                return None
            if outcome.task.version != expected + 1:
                outcome.task = msgspec.structs.replace(outcome.task, version=expected + 1)
            written = await self.store.update_task(
                outcome.task, expected_version=expected, approvals=outcome.approvals, audit=outcome.audit, callbacks=outcome.callbacks
            )
            if written:
                return outcome.task
        raise InvalidTaskState("the task is changing too often; retry")

    def _callbacks(self, task: TaskRecord, now: datetime) -> list[CallbackDelivery]:
        """AR-79: a terminal task notifies the PEP's callback, if it asked for this event. The
        body carries no approval: it is a notification; the status endpoint is authoritative
        and hands the result to the requester (AR-80)."""
        if task.callback is None or not is_terminal(task.status):
            return []
        callback = msgspec.convert(task.callback, Callback)
        if not wants_event(callback, task.status):
            return []
        status_url = self._status_url(task.id)
        wire = Task(id=task.id, status=task.status, status_endpoint=status_url)
        body = msgspec.to_builtins(callback_body(callback, wire))
        return [
            CallbackDelivery(
                id=_token("cb_"), task_id=task.id, caller=task.requester, event=task.status,
                endpoint=callback.endpoint, body=body, next_attempt_at=now,
            )
        ]

    @staticmethod
    def _audit(now: datetime, kind: str, actor: str, task: TaskRecord, data: dict[str, Any]) -> AuditDraft:
        return AuditDraft(at=now, kind=kind, actor=actor, task_id=task.id, data={"status": task.status, **data})


_REFUSALS: dict[str, str] = {
    "not_an_approver": "you are not an approver of this step",
    "self_approval": "you are a party to this request and may not approve it",
    "separation_of_duties": "you decided an earlier step of this request",
    "already_decided": "you already decided this step",
}


def _is_subject(task: TaskRecord, person: Reviewer) -> bool:
    return _uid(task.subject) == EntityUid(person.entity_type, person.entity_id)


def _entity_text(entity: dict[str, Any]) -> str:
    return f"{entity.get('type')}::{entity.get('id')}"


def _risk(workflow: Workflow | None, emergency: bool) -> str:
    """The workflow's declared risk; an emergency request is at least high."""
    declared = workflow.risk if workflow else "medium"
    return max(declared, "high", key=RISKS.index) if emergency else declared


def _ticket_mac(key: bytes, task_id: str) -> str:
    digest = hmac.new(key, task_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _recorded(record: EvaluationRecord | None) -> RecordedEvaluation | None:
    if record is None:
        return None
    return RecordedEvaluation(
        evaluation_id=record.evaluation_id,
        subject=record.subject,
        resource=record.resource,
        action=record.action,
        context_members=record.context_members,
        context_values=record.context_values,
        expires_at=format_instant(record.expires_at),
        template=record.template,
        requestable=record.requestable,
    )


def _result(approval: ApprovalRecord | None) -> Result | None:
    """§12: a `reevaluate` result with the approval as issued, `state` byte-for-byte."""
    if approval is None:
        return None
    return Result(
        mode=REEVALUATE,
        approval=Approval(
            id=approval.id,
            approved_until=format_instant(approval.approved_until),
            approved_at=format_instant(approval.approved_at),
            state=approval.state if approval.state is not None else msgspec.UNSET,
        ),
    )


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4000:
        raise BadRequest(f"{name} must be a string of at most 4000 characters")
    return value.strip() or None


def _optional_instant(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise BadRequest(f"{name} must be an RFC 3339 date-time with a time zone") from None
