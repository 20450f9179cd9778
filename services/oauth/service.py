"""The AS-facing sidecar (DESIGN.md §3, spec/arop.md): what the AS asks, what it is told.

The protocol rules are profiles.arop's; this module wires them to the PDP (every evaluation
goes through `DecisionRun`, so a requestable denial is issued, recorded and bound exactly as for
any PEP), to the ARS (called in-process as the AS caller, OP-10), to the store (handles, grants,
audit) and to the clock.

- `decide`: a token request → allow with the grant to mint, a synchronous error, remediation,
  or, with the DTR opt-in, one access request bound to a new or deduplicated `deferral_code`.
- `redeem`: a poll of the deferred grant → the §7 table; on approval the re-evaluation with
  `context.approval` and the grant, issued at most once (a version-checked store write).
- `cancel`: DTR revocation (RFC 7009: always 200, OP-65).
- `refresh_check` / `exchange_check`: later uses of a recorded grant (OP-35, OP-36).
- `expire_due`: pending handles past their expiry cancel their task, then expire (OP-26).

- `notify_due`: CIBA ping/push handles resolve when their task does; their notification is
  queued with the change (services/oauth/ciba.py) and delivered by the worker.

- the transaction challenge binding (`txn`, services/oauth/txn.py): the verified challenge
  is the RS's requestable denial; one access request per client and (`iss`, `txn`); the grant
  carries `txn` and the RS as audience, single-use, without refresh (OP-56..OP-60).

Nothing AuthZEN or ARAP reaches an OAuth answer (OP-2); audit events name outcomes, never
handles or `authorization_details` (OP-69).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Litestar

from profiles.arap.errors import (
    ARAPError,
    DuplicateRequest,
    InvalidTaskState,
    UnknownTask,
)
from profiles.arap.model import Approval, TaskResponse, format_instant, parse_instant
from profiles.arap.submission import entity_json
from profiles.arop import handles as rules
from profiles.arop.ciba import check_backchannel
from profiles.arop.dedup import (
    idempotency_key,
    presenter,
    request_dedup_key,
    txn_dedup_key,
    sender_of,
    thumbprint,
)
from profiles.arop.errors import ACCESS_DENIED, INVALID_GRANT, UNAUTHORIZED_CLIENT, OAuthFailure
from profiles.arop.grants import (
    GrantPolicy,
    GrantRecord,
    build_grant,
    check_exchange,
    check_refresh,
)
from profiles.arop.handles import HandleOwner, HandleState
from profiles.arop.metadata import SidecarMetadata, Transport, as_metadata
from profiles.arop.model import (
    Allow,
    CancelRequest,
    DecideRequest,
    DecideResponse,
    ExchangeCheckRequest,
    Grant,
    OAuthError,
    Pending,
    RedeemRequest,
    RedeemResponse,
    RefreshCheckRequest,
    Relay,
)
from profiles.arop.outcomes import PairDecision, Verdict, choose, denial_error, pending
from profiles.arop.requested import Requested, requested_of
from profiles.arop.txn_challenge import VerifiedChallenge
from profiles.arop.vocabulary import Pair, expand, request_context
from profiles.authzen.model import Decision, EvaluationRequest, Subject
from profiles.client_challenge.challenge import resolvable_without_evidence
from profiles.client_challenge.evidence import VerifiedEvidence
from services.access_requests.service import AccessRequestService, Forbidden
from services.auth import Caller
from services.oauth import ciba
from services.oauth.client_challenge import ClientChallenges
from services.oauth.sealing import HandleSeal
from services.oauth.txn import TxnChallenges, stored_challenge
from services.pdp.context_members import APPROVAL, CLIENT_EVIDENCE
from services.pdp.decisions import DecisionRun, challenge_types
from services.pdp.engine import Outcome
from services.store.records import (
    AuditDraft,
    CallbackDelivery,
    ContinuationHandle,
    IssuedGrant,
)

log = logging.getLogger("arop.oauth")
MAX_ATTEMPTS = 8  # version-checked handle writes retried before giving up
class SidecarService:
    def __init__(self, app: Litestar, access_requests: AccessRequestService) -> None:
        self.app = app
        self.config = access_requests.config
        self.store = access_requests.store
        self.runtime = access_requests.runtime
        self.ars = access_requests
        self.seal = HandleSeal(self.store)
        settings = self.config.oauth
        self.policy = GrantPolicy(
            access_ttl=timedelta(seconds=settings.access_token_ttl),
            refresh_ttl=timedelta(seconds=settings.refresh_token_ttl) if settings.refresh_token_ttl else None,
            floor=timedelta(seconds=settings.min_token_lifetime),
        )
        skew = timedelta(seconds=self.config.access_requests.clock_skew)
        self.txn = TxnChallenges(settings, self.store, skew)
        self.challenges = ClientChallenges(settings, self.store, skew)

    # -- metadata (§4, OP-12) ---------------------------------------------------------------

    def metadata(self) -> SidecarMetadata:
        """What the AS advertises: every binding is served, the transaction challenge once
        this AS has an issuer and recognizes a resource server; push once the AS's push
        endpoint is configured (OP-51); the RAR types of the current bundle (TX-67)."""
        settings = self.config.oauth
        transports: list[Transport] = ["dtr", "ciba", *(["txn"] if settings.issuer and settings.resource_servers else [])]
        modes = ["poll", "ping", *(["push"] if settings.push_endpoint else [])]
        types = self.runtime.current().bundle.vocabulary.authorization_details
        return as_metadata(transports=transports, delivery_modes=modes, details_types=types)

    # -- decide (§5, §6, §10, §11.1) -------------------------------------------------------

    async def decide(self, caller: Caller, request: DecideRequest, now: datetime) -> DecideResponse:
        try:
            answer = await self._decide(caller, request, now)
        except OAuthFailure as failure:
            answer = failure.response()
        if not isinstance(answer, Pending):  # audited with the handle
            await self._audit(now, "oauth.decide", caller, None, request.binding, request.client.id, answer)
        return answer

    async def _decide(self, caller: Caller, request: DecideRequest, now: datetime) -> DecideResponse:
        if request.binding == "txn":
            return await self._decide_txn(caller, request, now)
        # OP-49..OP-53, TX-20..TX-22: a CIBA request is checked before any evaluation; its
        # `subject` is the user the AS resolved the hint to (OP-49), evaluated like any other.
        requested_expiry = check_backchannel(request) if request.binding == "ciba" else None
        ciba.check_push(request, self.config.oauth.push_endpoint)
        requested = requested_of(request)
        # TX-58: a follow-up's evidence, verified; the request itself is kept without it.
        try:
            evidence, unanswered = await self.challenges.answer(request, requested, caller.name, now), None
        except OAuthFailure as failure:
            if failure.error != UNAUTHORIZED_CLIENT:
                raise
            evidence, unanswered = None, failure
        request = msgspec.structs.replace(request, challenge_session=None, evidence=None)
        evaluated, verdicts, kinds = await self._judge(caller, request, requested, {}, evidence)
        if unanswered is not None:
            # TX-57, DESIGN §3: a client that cannot satisfy the challenge may still reach
            # approval, the other way to resolve it; only without one is it unauthorized_client.
            if not resolvable_without_evidence([v.verdict for v in verdicts]):
                raise unanswered
        else:
            kind = self.challenges.requirement(request, [(v.verdict, k) for v, k in zip(verdicts, kinds)], evidence)
            if kind is not None:  # DESIGN §3: the challenge comes first, approval after it
                return await self.challenges.challenge(kind, request, requested, caller.name, now)
        settings = self.config.oauth
        choice = choose(request, verdicts, retry_with=settings.retry_with if settings.remediation else [])
        if choice == "allow":
            # D-CC-5: a grant on client evidence lives no longer than the evidence and is used
            # as minted (no refresh, no exchange): the client answers a new challenge instead.
            bounds = [evidence.expires_at] if evidence else []
            return Allow(grant=build_grant(request, requested, now=now, policy=self.policy, approved_until=bounds, single_use=evidence is not None))
        if choice == "defer":
            return await self._defer(caller, request, requested, evaluated, now, requested_expiry, evidence=evidence)
        return choice

    async def _judge(
        self, caller: Caller, request: DecideRequest, requested: Requested, extra: dict[str, Any], evidence: VerifiedEvidence | None = None
    ) -> tuple[list[tuple[Pair, EvaluationRequest, Decision]], list[PairDecision], list[list[str]]]:
        """§10, OP-38, OP-40: the request expanded through the bundle's vocabulary into pairs,
        each evaluated with one shared context (plus `extra`, the binding's own members, and
        the verified client `evidence`); with each pair's `@challenge` types (DESIGN §3)."""
        vocabulary = self.runtime.current().bundle.vocabulary
        pairs = expand(requested, vocabulary)
        context = _context(request, {**request_context(requested, vocabulary), **extra})
        evaluations = [EvaluationRequest(_subject(request), pair.action, pair.resource, context) for pair in pairs]
        decided = await self._evaluate(caller, evaluations, evidence.policy_input() if evidence else None)
        decisions = [decision for decision, _ in decided]
        verdicts = [PairDecision(pair, _verdict(decision), self._reveals(decision)) for pair, decision in zip(pairs, decisions)]
        return list(zip(pairs, evaluations, decisions)), verdicts, [challenge_types(outcome) for _, outcome in decided]

    async def _decide_txn(self, caller: Caller, request: DecideRequest, now: datetime) -> DecideResponse:
        """OP-57..OP-60, TX-42, TX-43, D-AROP-10/13/23: verify the challenge, admit it (another
        client's `txn` or a replayed `jti` → invalid_request; the same client's pending handle
        again), evaluate its operation per the placement, then one access request as for DTR."""
        assert request.transaction_challenge is not None
        challenge = await self.txn.verify(request.transaction_challenge, now)
        presented_by = presenter(request, authority=caller.name)
        current = await self.txn.admit(challenge, presented_by, now)
        if current is not None:
            return await self._repeat(caller, current, now)
        requested = challenge.requested()
        evaluated, verdicts, _ = await self._judge(caller, request, requested, self.txn.context(challenge))
        choice = self.txn.choose(request, verdicts)
        if choice != "defer":
            return choice
        dedup_key = txn_dedup_key(presented_by, challenge.iss, challenge.txn)
        return await self._defer(caller, request, requested, evaluated, now, dedup_key=dedup_key, challenge=challenge)

    async def _evaluate(
        self, caller: Caller, requests: Sequence[EvaluationRequest], client_evidence: dict[str, Any] | None = None
    ) -> list[tuple[Decision, Outcome]]:
        """Every pair through the PDP's own decision path: a requestable denial gets its
        `evaluation_id` recorded and its `binding_token` signed before the ARS sees it, an
        approval is verified and audited (AR-66..AR-72), exactly as for any PEP. Verified
        client evidence is `context.client_evidence` of every pair, which no PEP can set."""
        run = DecisionRun(self.app, caller, explain=False)
        await run.prefetch(requests)
        extra = [{CLIENT_EVIDENCE: client_evidence}] * len(requests) if client_evidence is not None else None
        decided = run.decide_with_outcomes(requests, extra)
        if run.unfinished:
            await run.finish()
        return decided

    def _reveals(self, decision: Decision) -> bool:
        """OP-73, D-AROP-4: may a client that did not opt in learn the access is requestable?"""
        hint = (decision.context or {}).get("access_request")
        if not isinstance(hint, dict):
            return True
        workflow = self.runtime.current().bundle.workflows.get(hint.get("template", ""))
        return workflow is None or workflow.reveal_to_clients

    async def _defer(
        self, caller: Caller, request: DecideRequest, requested: Requested, evaluated: list[tuple[Pair, EvaluationRequest, Decision]], now: datetime,
        requested_expiry: int | None = None,
        *,
        dedup_key: str | None = None,
        challenge: VerifiedChallenge | None = None,
        evidence: VerifiedEvidence | None = None,
    ) -> DecideResponse:
        """OP-16, OP-20, OP-43, D-AROP-5: one access request for the whole request (OP-38),
        bound to a handle; a retry while that handle is pending gets it back. A txn handle
        dedups on client, `iss` and `txn` (`dedup_key`) and records the challenge's (OP-60);
        one opened on client evidence records it for the re-evaluations (D-CC-5)."""
        dedup_key = dedup_key or request_dedup_key(request, requested, authority=caller.name)
        known = await self.store.handles_for_dedup_key(dedup_key)
        current = next((h for h in known if h.state == "pending" and h.expires_at > now), None)
        if current is not None:
            return await self._repeat(caller, current, now)
        resolved = sum(1 for h in known if h.state != "pending" or h.expires_at <= now)
        key = idempotency_key(dedup_key, resolved)
        requestable = [(index, e) for index, e in enumerate(evaluated) if _verdict(e[2]) == "requestable"]
        task = await self._submit(caller, _submission([e for _, e in requestable]), key, now)
        if task is None:
            return denial_error(requestable[0][1][0].origin)
        task_id, task_expires, task_status = task
        settings = self.config.oauth
        expires_in = rules.handle_expires_in(
            now=now, ttl=timedelta(seconds=settings.handle_ttl), task_expires_at=task_expires, requested_expiry=requested_expiry
        )
        if expires_in < 1:
            return denial_error(requestable[0][1][0].origin)
        handle = rules.new_handle()
        item_of = {index: item for item, (index, _) in enumerate(requestable)}
        record = ContinuationHandle(
            handle_digest=rules.handle_digest(handle),
            binding="dtr" if request.binding == "token" else request.binding,  # a token request never defers (OP-17)
            authority=caller.name,
            client_id=request.client.id,
            client_auth=request.client.auth_method,
            key_thumbprint=thumbprint(request.sender) or None,
            dedup_key=dedup_key,
            principal=entity_json(request.subject),
            task_id=task_id,
            request=msgspec.to_builtins(request),
            evaluations=[
                {"request": msgspec.to_builtins(e[1]), "item": item_of.get(index)}
                for index, e in enumerate(evaluated)
            ],
            state="pending",
            interval=settings.interval,
            expires_at=now + timedelta(seconds=expires_in),
            created_at=now,
            updated_at=now,
            sealed_handle=await self.seal.seal(handle),
            notification=await ciba.notification_of(request, self.seal),
            txn_issuer=challenge.iss if challenge else None,
            txn=challenge.txn if challenge else None,
            client_evidence=evidence.policy_input() if evidence else None,
            client_evidence_until=evidence.expires_at if evidence else None,
        )
        audit = self._draft(now, "oauth.decide", caller, task_id, request.binding, request.client.id, "pending")
        created = await self.store.create_handle(record, audit=[audit])
        if not created.created:
            return await self._repeat(caller, created.handle, now)
        if task_status == "approved" and record.binding != "ciba":
            issued = await self._complete_at_once(caller, created.handle, now)
            if issued is not None:
                return issued
        return pending(request.binding, handle=handle, expires_in=expires_in, interval=settings.interval, delivery_mode=ciba.delivery_mode(record))

    async def _repeat(self, caller: Caller, record: ContinuationHandle, now: datetime) -> DecideResponse:
        """OP-20, §11.1 step 5: the pending handle again, with its remaining lifetime."""
        assert record.sealed_handle is not None
        handle = await self.seal.open(record.sealed_handle)
        await self.store.append_audit([self._draft(now, "oauth.decide", caller, record.task_id, record.binding, record.client_id, "pending_again")])
        return pending(
            record.binding, handle=handle, expires_in=rules.remaining_seconds(record.expires_at, now), interval=record.interval,
            delivery_mode=ciba.delivery_mode(record),
        )

    async def _complete_at_once(self, caller: Caller, record: ContinuationHandle, now: datetime) -> Allow | None:
        """TX-7, TX-38 (a), D-9: a workflow that approved on submission (auto-approval) needs no
        waiting: DTR and the transaction endpoint answer with the token at once, through the same
        re-evaluation and one-time write as a redemption. CIBA cannot: its backchannel answer is
        always an `auth_req_id` (TX-21). Anything but a grant leaves the handle to its polls."""
        task = await self._task(caller, record, now)
        issued = await self._issue(caller, record, task, now) if _resolution(task) == "approved" else None
        return issued if isinstance(issued, Allow) else None

    async def _submit(self, caller: Caller, body: dict[str, Any], key: str, now: datetime) -> tuple[str, datetime, str] | None:
        """OP-10, OP-43: the ARAP submission, in-process, as the AS caller. A retry after a
        crash between submission and handle (the same Idempotency-Key with a fresh denial)
        finds the task the key is bound to. Any refusal leaves the access unobtainable."""
        try:
            submitted = await self.ars.submit(_as_pep(caller), msgspec.json.encode(body), key, now)
        except DuplicateRequest:
            bound = await self.store.idempotent_task(caller.name, key, now.replace(microsecond=0))
            return None if bound is None else (bound.task.id, bound.task.expires_at, bound.task.status)
        except (ARAPError, Forbidden) as exc:
            log.warning("the access request of a requestable denial was refused", extra={"error": str(exc)})
            return None
        task = submitted.response.task
        return task.id, parse_instant(task.expires_at) if task.expires_at else now, task.status

    # -- redeem (§7, §8, §9) ---------------------------------------------------------------

    async def redeem(self, caller: Caller, request: RedeemRequest, now: datetime) -> RedeemResponse:
        record = None
        try:
            record = await self.store.get_handle(rules.handle_digest(request.handle))
            if record is None:
                raise OAuthFailure(INVALID_GRANT)
            rules.check_redeemer(_owner(record), request, authority=caller.name)
            answer = await self._redeem(caller, record, now)
        except OAuthFailure as failure:
            answer = failure.response()
        task_id = record.task_id if record else None
        await self._audit(now, "oauth.redeem", caller, task_id, request.binding, request.client_id, answer)
        return answer

    async def _redeem(self, caller: Caller, record: ContinuationHandle, now: datetime) -> RedeemResponse:
        for _ in range(MAX_ATTEMPTS):
            task = await self._task(caller, record, now) if record.state == "pending" and now < record.expires_at else None
            resolution = _resolution(task)
            if resolution == "denied":
                if await self._settle(record, "denied", now):
                    return OAuthError(status=400, error=ACCESS_DENIED)
            else:
                answer = rules.poll(
                    HandleState(record.state),
                    binding=record.binding,
                    now=now,
                    expires_at=record.expires_at,
                    last_poll_at=record.last_poll_at or record.created_at,
                    interval=record.interval,
                    approved=resolution == "approved",
                )
                if answer.error is None:
                    assert task is not None
                    issued = await self._issue(caller, record, task, now)
                    if issued is not None:
                        return issued
                elif answer.state is HandleState.EXPIRED and record.state == "pending":
                    await self._cancel_task(caller, record, now)
                    if await self._settle(record, "expired", now):
                        return answer.error
                elif record.state != "pending" or await self._write(msgspec.structs.replace(record, interval=answer.interval, last_poll_at=now, updated_at=now), record):
                    return answer.error
            current = await self.store.get_handle(record.handle_digest)
            assert current is not None
            record = current
        raise OAuthFailure(INVALID_GRANT)

    async def _task(self, caller: Caller, record: ContinuationHandle, now: datetime) -> TaskResponse | None:
        """The ARS task behind the handle; unreachable or unknown → None, and the handle stays
        pending until it expires (OP-32: never fail open)."""
        try:
            return await self.ars.status(_as_pep(caller), record.task_id, _whole(now))
        except (ARAPError, Forbidden) as exc:
            log.warning("the task of a pending handle could not be read", extra={"error": str(exc)})
            return None

    async def _issue(self, caller: Caller, record: ContinuationHandle, task: TaskResponse, now: datetime) -> RedeemResponse | None:
        """OP-45, OP-34, OP-25: re-evaluate every pair, those approved with `context.approval`
        exactly as the ARS issued it, then build the grant bounded by the earliest
        `approved_until` and flip the handle to issued with it in one version-checked write.
        None: another writer moved the handle on; the caller reads it again."""
        approvals = _approvals(task)
        requests = [_with_approval(entry, approvals) for entry in record.evaluations]
        decided = await self._evaluate(caller, requests, record.client_evidence)
        decisions = [decision for decision, _ in decided]
        if not all(d.decision for d in decisions):
            return OAuthError(status=400, error=ACCESS_DENIED) if await self._settle(record, "denied", now) else None
        bounds = [parse_instant(a["approved_until"]) for a in approvals.values()]
        bounds += [record.client_evidence_until] if record.client_evidence_until else []
        bounds += [parse_instant(d.context["approval"]["approved_until"]) for d in decisions if d.context and "approval" in d.context]
        request = msgspec.convert(record.request, DecideRequest)
        challenge = stored_challenge(record) if record.binding == "txn" else None  # OP-59
        single_use = challenge is not None or record.client_evidence is not None  # OP-59, D-CC-5
        requested = challenge.requested() if challenge is not None else requested_of(request)
        grant_id = "gr_" + secrets.token_urlsafe(24)
        try:
            grant = build_grant(
                request, requested, now=now, policy=self.policy, approved_until=bounds, grant_id=grant_id,
                single_use=single_use, challenge=challenge,
            )
        except OAuthFailure as failure:
            return failure.response() if await self._settle(record, "denied", now) else None
        earliest = min(approvals.values(), key=lambda a: parse_instant(a["approved_until"]))
        issued = IssuedGrant(
            grant_id=grant_id,
            handle_digest=record.handle_digest,
            authority=record.authority,
            client_id=record.client_id,
            client_auth=record.client_auth,
            key_thumbprint=record.key_thumbprint,
            subject=record.principal,
            authorization_details=grant.authorization_details or [],
            scope=(grant.scope or "").split(),
            audience=grant.audience,
            approval=earliest,
            approved_until=min(bounds),
            refresh_allowed=grant.refresh_allowed,
            single_use=single_use,
            created_at=now,
            grant=msgspec.to_builtins(grant),
        )
        evaluations = [{**entry, "approval": approvals[entry["item"]]} if entry.get("item") is not None else entry for entry in record.evaluations]
        changed = msgspec.structs.replace(
            record, state="issued", grant_id=grant_id, approval=earliest, evaluations=evaluations, last_poll_at=now, updated_at=now
        )
        if await self._write(changed, record, grants=[issued]):
            return Allow(grant=grant)
        return None

    async def _settle(self, record: ContinuationHandle, state: str, now: datetime) -> bool:
        """A pending handle resolves once (§7); False when another writer came first."""
        return await self._write(msgspec.structs.replace(record, state=state, last_poll_at=now, updated_at=now), record)

    async def _write(self, changed: ContinuationHandle, record: ContinuationHandle, grants: Sequence[IssuedGrant] = ()) -> bool:
        """A version-checked handle write, with the CIBA notification it causes queued in the
        same transaction (services/oauth/ciba.py): a resolution is never without its notice.
        A handle that leaves PENDING drops its sealed copy: nothing may answer with it again
        (D-AROP-18), and a copy of the database then holds no handle at all (OP-27)."""
        sealed = changed.sealed_handle if changed.state == "pending" else None
        changed = msgspec.structs.replace(changed, version=record.version + 1, sealed_handle=sealed)
        callbacks: list[CallbackDelivery] = []
        if ciba.awaits_notice(record):
            callbacks = ciba.notifications(
                record, changed, grant=grants[0].grant if grants else None,
                push_endpoint=self.config.oauth.push_endpoint, now=changed.updated_at,
            )
        return await self.store.update_handle(changed, expected_version=record.version, grants=grants, callbacks=callbacks)

    # -- cancel (§14) ----------------------------------------------------------------------

    async def cancel(self, caller: Caller, request: CancelRequest, now: datetime) -> Relay:
        """OP-65, OP-48, TX-19: a DTR revocation by the handle's client and key cancels the ARS
        task and the handle; anything else has no effect. RFC 7009: 200 either way."""
        record = await self.store.get_handle(rules.handle_digest(request.token))
        applies = record is not None and rules.revocation_applies(_owner(record), request, authority=caller.name)
        if record is not None and applies and record.state == "pending":
            await self._cancel_task(caller, record, now)
            for _ in range(MAX_ATTEMPTS):
                if record is None or record.state != "pending" or await self._settle(record, "cancelled", now):
                    break
                record = await self.store.get_handle(record.handle_digest)
        outcome = "cancelled" if applies else "no_effect"
        task_id = record.task_id if record is not None and applies else None
        await self.store.append_audit([self._draft(now, "oauth.cancel", caller, task_id, "dtr", request.client_id, outcome)])
        return Relay(status=200, body={})

    async def _cancel_task(self, caller: Caller, record: ContinuationHandle, now: datetime) -> None:
        """OP-26, OP-48, OP-67: the access request behind the handle ends with it. A task that
        is already terminal or gone needs nothing more."""
        try:
            await self.ars.cancel(_as_pep(caller), record.task_id, {"reason": "the OAuth request ended"}, _whole(now))
        except (InvalidTaskState, UnknownTask):
            pass
        except (ARAPError, Forbidden) as exc:
            log.warning("the task of a handle could not be cancelled", extra={"error": str(exc)})

    async def expire_due(self, caller: Caller, now: datetime) -> int:
        """OP-26, OP-67: pending handles past their expiry cancel their task first, then
        expire; a crash in between leaves the handle pending, so the next run cancels again."""
        expired = 0
        for record in await self.store.list_handles(state="pending", expires_before=now, limit=500):
            await self._cancel_task(caller, record, now)
            if await self._settle(record, "expired", now):
                expired += 1
                await self.store.append_audit([self._draft(now, "oauth.expire", caller, record.task_id, record.binding, record.client_id, "expired")])
        return expired

    async def notify_due(self, caller: Caller, now: datetime) -> int:
        """OP-51, TX-26..TX-28: CIBA ping and push handles resolve when their task does, not when
        a client polls. Each pending one whose task is terminal is resolved here (push: issued
        with its grant, or denied; ping: its approval noticed, or denied), and `_write` queues
        its notification with that change. Returns how many were resolved."""
        resolved, after = 0, None
        while True:
            page = await self.store.list_handles(state="pending", binding="ciba", limit=500, after=after)
            for record in page:
                if ciba.awaits_notice(record) and now < record.expires_at and await self._notice(caller, record, now):
                    resolved += 1
            if len(page) < 500:
                return resolved
            after = page[-1].handle_digest

    async def _notice(self, worker: Caller, record: ContinuationHandle | None, now: datetime) -> bool:
        """One handle, read and resolved as the AS caller that opened it: the ARS shows the
        approval to the requester only."""
        caller = self._as_caller(worker, record)
        for _ in range(MAX_ATTEMPTS):
            if record is None or not ciba.awaits_notice(record):
                return False
            task = await self._task(caller, record, now)
            resolution = _resolution(task)
            if resolution == "pending":
                return False
            if resolution == "denied":
                done = await self._settle(record, "denied", now)
            elif ciba.delivery_mode(record) == "ping":
                done = await self._write(ciba.approval_noticed(record, now), record)
            else:
                assert task is not None
                done = await self._issue(caller, record, task, now) is not None
            if done:
                await self.store.append_audit([self._draft(now, "oauth.notify", caller, record.task_id, record.binding, record.client_id, resolution)])
                return True
            record = await self.store.get_handle(record.handle_digest)
        return False

    def _as_caller(self, worker: Caller, record: ContinuationHandle | None) -> Caller:
        configured = next((c for c in self.config.callers if record is not None and c.name == record.authority), None)
        if configured is None:
            return worker
        return Caller(configured.name, frozenset(configured.scopes), tuple((p.type, p.id) for p in configured.subjects))

    # -- refresh and exchange (§9, OP-35..OP-37) -------------------------------------------

    async def refresh_check(self, caller: Caller, request: RefreshCheckRequest, now: datetime) -> RedeemResponse:
        return await self._grant_check(caller, request, now, check_refresh, "oauth.refresh")

    async def exchange_check(self, caller: Caller, request: ExchangeCheckRequest, now: datetime) -> RedeemResponse:
        return await self._grant_check(caller, request, now, check_exchange, "oauth.exchange")

    async def _grant_check(self, caller: Caller, request: Any, now: datetime, check: Any, kind: str) -> RedeemResponse:
        """OP-35, OP-36, D-AROP-14/15: the recorded grant's rules, then a re-evaluation of every
        pair with its stored approval: a revoked or lapsed approval, or changed policy, is
        invalid_grant."""
        issued = await self.store.get_grant(request.grant_id)
        task_id = None
        try:
            if issued is None or issued.revoked_at is not None:
                raise OAuthFailure(INVALID_GRANT)
            record = GrantRecord(
                grant=msgspec.convert(issued.grant, Grant),
                authority=issued.authority,
                client_id=issued.client_id,
                auth_method=issued.client_auth,
                sender=sender_of(issued.key_thumbprint),
                approved_until=format_instant(issued.approved_until),
                single_use=issued.single_use,
            )
            grant = check(record, request, authority=caller.name, now=now, policy=self.policy)
            handle = await self.store.get_handle(issued.handle_digest)
            if handle is None:
                raise OAuthFailure(INVALID_GRANT)
            task_id = handle.task_id
            approvals = _stored_approvals(handle)
            decided = await self._evaluate(caller, [_with_approval(entry, approvals) for entry in handle.evaluations], handle.client_evidence)
            if not all(decision.decision for decision, _ in decided):
                raise OAuthFailure(INVALID_GRANT)
            answer: RedeemResponse = Allow(grant=grant)
        except OAuthFailure as failure:
            answer = failure.response()
        await self._audit(now, kind, caller, task_id, "dtr", request.client_id, answer)
        return answer

    # -- audit -----------------------------------------------------------------------------

    def _draft(self, now: datetime, kind: str, caller: Caller, task_id: str | None, binding: str, client_id: str, outcome: str) -> AuditDraft:
        return AuditDraft(at=now, kind=kind, actor=caller.name, task_id=task_id, data={"binding": binding, "client_id": client_id, "outcome": outcome})

    async def _audit(self, now: datetime, kind: str, caller: Caller, task_id: str | None, binding: str, client_id: str, answer: Any) -> None:
        """One event per answer, naming its outcome and OAuth error code only (OP-69)."""
        outcome = getattr(answer, "error", None) or type(answer).__name__.lower()
        await self.store.append_audit([self._draft(now, kind, caller, task_id, binding, client_id, outcome)])


# -- mapping helpers -----------------------------------------------------------------------


def _whole(now: datetime) -> datetime:
    """The ARS reads and stamps whole seconds (services/access_requests/api.py)."""
    return now.replace(microsecond=0)


def _as_pep(caller: Caller) -> Caller:
    """OP-10: the sidecar submits, reads and cancels the access requests behind its handles
    as the AS caller itself (its name is the requester; its subject limits apply)."""
    return Caller(caller.name, caller.scopes | {"request", "cancel"}, caller.subjects)


def _subject(request: DecideRequest) -> Subject:
    """§10: the principal the token will act as, with the acting agent in `properties.act`."""
    if request.actor is None:
        return request.subject
    return Subject(request.subject.type, request.subject.id, {**(request.subject.properties or {}), "act": request.actor})


def _context(request: DecideRequest, members: dict[str, Any]) -> dict[str, Any]:
    """§10, OP-42: the client, its key and the resource indicators, and the vocabulary's
    members; nothing volatile (no time, nonce or request id), so that the denial binding and
    the approval's exact-match scope stay stable between decide and redeem."""
    context: dict[str, Any] = {**members, "client_id": request.client.id}
    if request.sender.dpop_jkt is not None:
        context["dpop_jkt"] = request.sender.dpop_jkt
    if request.sender.x5t_s256 is not None:
        context["x5t_s256"] = request.sender.x5t_s256
    if request.resource:
        context["resource"] = list(request.resource)
    return context


def _verdict(decision: Decision) -> Verdict:
    """OP-13: requestable only with `context.access_request`."""
    if decision.decision:
        return "allow"
    return "requestable" if isinstance((decision.context or {}).get("access_request"), dict) else "deny"


def _denial(decision: Decision) -> dict[str, Any]:
    """OP-43: the denial's binding material, echoed byte-for-byte, never decoded."""
    context = decision.context or {}
    hint = context["access_request"]
    denial = {
        "expires_at": hint.get("expires_at"),
        "evaluation_id": context.get("evaluation_id"),
        "binding_token": hint.get("binding_token"),
        "evaluated_at": context.get("evaluated_at"),
        "reason": context.get("reason"),
        "template": hint.get("template"),
    }
    return {name: value for name, value in denial.items() if value is not None}


def _submission(requestable: Sequence[tuple[Pair, EvaluationRequest, Decision]]) -> dict[str, Any]:
    """ARAP §8.1: one requestable pair is a plain submission, several one bundle (`items`) with
    each item's own denial; subject and context are the evaluated ones, exactly (AR-22)."""
    _, first, _ = requestable[0]
    body: dict[str, Any] = {"subject": entity_json(first.subject), "context": first.context}
    if len(requestable) == 1:
        body.update(resource=entity_json(first.resource), action=entity_json(first.action), denial=_denial(requestable[0][2]))
    else:
        body["items"] = [
            {"resource": entity_json(e.resource), "action": entity_json(e.action), "denial": _denial(d)} for _, e, d in requestable
        ]
    return body


def _owner(record: ContinuationHandle) -> HandleOwner:
    """OP-62: the binding, client, method and key recorded at origination."""
    return HandleOwner(
        authority=record.authority, binding=record.binding, client_id=record.client_id, auth_method=record.client_auth, sender=sender_of(record.key_thumbprint),
        delivery_mode=ciba.delivery_mode(record),
    )


def _resolution(task: TaskResponse | None) -> rules.TaskResolution:
    """D-AROP-9 over the task as read: a bundle is approved only when every item is."""
    if task is None:
        return "pending"
    if task.task.items:
        results = [item.result for item in task.task.items]
        approved = all(r is not None and r.approval is not None for r in results)
        mode = next((r.mode for r in results if r is not None and r.mode != "reevaluate"), None)
        return rules.task_resolution(task.task.status, mode=mode, has_approval=approved)
    result = task.result
    return rules.task_resolution(task.task.status, mode=result.mode if result else None, has_approval=bool(result and result.approval))


def _approvals(task: TaskResponse) -> dict[int, dict[str, Any]]:
    """Each task item's approval as the ARS issued it (its JSON, `state` untouched), by item."""
    found: list[Approval | None]
    if task.task.items:
        found = [item.result.approval if item.result else None for item in task.task.items]
    else:
        found = [task.result.approval if task.result else None]
    return {index: msgspec.to_builtins(approval) for index, approval in enumerate(found) if approval is not None}


def _stored_approvals(record: ContinuationHandle) -> dict[int, dict[str, Any]]:
    """The approvals an issued handle recorded with its evaluations (OP-37)."""
    return {entry["item"]: entry["approval"] for entry in record.evaluations if entry.get("approval") is not None}


def _with_approval(entry: dict[str, Any], approvals: dict[int, dict[str, Any]]) -> EvaluationRequest:
    """OP-45: the original evaluation, with `context.approval` when its pair was approved."""
    request = msgspec.convert(entry["request"], EvaluationRequest)
    item = entry.get("item")
    if item is None:
        return request
    return msgspec.structs.replace(request, context={**(request.context or {}), APPROVAL: approvals[item]})
