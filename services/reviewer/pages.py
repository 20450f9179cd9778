"""The reviewer UI's pages (DESIGN.md §3 "Reviewer UI"), on the service methods the reviewer
API uses: whatever a page shows or does, the service has decided the person may.

    GET  /ui/login                    sign-in: local account form, and OpenID Connect
    POST /ui/login                    sign in with a local account
    GET  /ui/login/oidc               start the OpenID Connect sign-in
    GET  /ui/login/oidc/callback      finish it
    POST /ui/logout                   sign out
    GET  /ui/                         my inbox: what awaits my decision (filters, counts)
    GET  /ui/inbox/rows               the inbox's list alone (htmx, on every live update)
    GET  /ui/events                   live updates (server-sent events)
    GET  /ui/tasks/{id}               a request: who, what, why, risk, history
    POST /ui/tasks/{id}/approve       approve (optionally for less time), deny, comment
    POST /ui/tasks/{id}/deny
    POST /ui/tasks/{id}/comment
    GET  /ui/requests                 my requests and their status
    GET  /ui/admin                    administrators: every task, search
    GET  /ui/admin/audit              the audit chain's verification
    POST /ui/admin/tasks/{id}/cancel

Every POST carries the session's CSRF token (form field `csrf_token`, or the `X-CSRF-Token`
header htmx sends) and is refused from another site (`Sec-Fetch-Site`, `Origin`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from profiles.arap.errors import ARAPError, InvalidTaskState
from services.access_requests.service import AccessRequestService, Forbidden, ReviewRefused
from services.access_requests.workflows import RISKS
from services.auth import Caller, Reviewer
from services.config import Config
from services.reviewer import views
from services.reviewer.live import TaskChanges
from services.reviewer.sessions import ReviewerSessions, csrf_valid, same_secret
from services.store import Store, StoreUnavailable
from services.store.records import ReviewerSession, SignedIn

AnyRequest = Request[Any, Any, Any]
HERE = Path(__file__).parent
log = logging.getLogger("arop.reviewer")
KEEPALIVE_SECONDS = 15.0  # a comment on an idle event stream, so that proxies keep it open
SECURITY_HEADERS = {
    # Scripts and styles only from this service (htmx is vendored): injected markup cannot run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class ReviewerUI:
    """What the pages share in one worker: sessions, sign-in methods, templates, live updates."""

    def __init__(self, config: Config, store: Store, service: AccessRequestService) -> None:
        # Built on a worker's first page, with the libraries only pages need (templates, argon2,
        # the OpenID Connect client): workers that only decide never load them.
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        from services.reviewer.accounts import LocalAccounts
        from services.reviewer.oidc import OidcSignIn

        ui = config.reviewer_ui
        self.service = service
        self.sessions = ReviewerSessions(store, ui)
        self.accounts = LocalAccounts(config.reviewers)
        redirect_uri = ui.oidc.redirect_uri or f"{config.server.base_url()}/ui/login/oidc/callback"
        self.oidc = OidcSignIn(ui.oidc, redirect_uri) if ui.oidc.issuer else None
        self.oidc_name = ui.oidc.display_name
        self.admins = {(a.type, a.id) for a in ui.admins}
        # Behind a TLS-terminating proxy the browser's Origin is the public URL's, not the one
        # this process sees.
        public = urlsplit(config.server.base_url())
        self.origin = f"{public.scheme}://{public.netloc}"
        # argon2 takes 64 MiB and tens of milliseconds per hash: a few at a time per worker.
        self.password_checks = asyncio.Semaphore(2)
        self.live = TaskChanges(store, ui.live_interval)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["entity"] = views.entity
        self.templates.filters["when"] = views.when

    def is_admin(self, reviewer: Reviewer) -> bool:
        return (reviewer.entity_type, reviewer.entity_id) in self.admins

    def render(self, name: str, status: int = 200, *, cookies: list[Cookie] | None = None, **values: Any) -> Response[str]:
        page = self.templates.get_template(name).render(risks=RISKS, **values)
        return Response(page, status_code=status, media_type="text/html; charset=utf-8", cookies=cookies or [], headers=SECURITY_HEADERS)


class SignInRequired(Exception):
    pass


class CsrfRejected(Exception):
    pass


class NotAdmin(Exception):
    pass


def _ui(request: AnyRequest) -> ReviewerUI:
    state = request.app.state
    if state.reviewer_ui is None:
        state.reviewer_ui = ReviewerUI(state.config, state.store, state.access_requests)
    ui: ReviewerUI = state.reviewer_ui
    return ui


def _now() -> datetime:
    """Whole seconds, as the service reads and stamps instants."""
    return datetime.now(UTC).replace(microsecond=0)


def _cookie(ui: ReviewerUI, value: str, session: ReviewerSession | None) -> Cookie:
    """The cookie naming `session` (None: the cookie that ends the browser's session)."""
    max_age = int((session.expires_at - session.created_at).total_seconds()) if session else 0
    return Cookie(key=ui.sessions.cookie_name, value=value, max_age=max_age, path="/", secure=ui.sessions.secure, httponly=True, samesite="lax")


async def _start(ui: ReviewerUI) -> tuple[ReviewerSession, Cookie]:
    """A new pre-sign-in session and the cookie that names it."""
    value, session = await ui.sessions.start(_now())
    return session, _cookie(ui, value, session)


async def _session(request: AnyRequest) -> ReviewerSession | None:
    ui = _ui(request)
    return await ui.sessions.load(request.cookies.get(ui.sessions.cookie_name), datetime.now(UTC))


def _reviewer(signed_in: SignedIn) -> Reviewer:
    return Reviewer(signed_in.name, signed_in.entity_type, signed_in.entity_id)


async def _signed_in(request: AnyRequest) -> tuple[ReviewerSession, Reviewer]:
    session = await _session(request)
    if session is None or session.signed_in is None:
        raise SignInRequired
    return session, _reviewer(session.signed_in)


def _check_post(request: AnyRequest, session: ReviewerSession | None, form: dict[str, Any]) -> None:
    """CSRF: the session's token in the form (or htmx's header), from this site's own pages.
    `Sec-Fetch-Site` and `Origin` refuse a cross-site post even before the token is looked at."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRejected
    origin = request.headers.get("origin")
    if origin is not None and origin not in (f"{request.url.scheme}://{request.url.netloc}", _ui(request).origin):
        raise CsrfRejected
    token = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not csrf_valid(session, token if isinstance(token, str) else None):
        raise CsrfRejected


class BadForm(Exception):
    pass


def _field(form: dict[str, Any], name: str, limit: int) -> str:
    """A text field, trimmed; "" when absent; BadForm for a file or an oversized value."""
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise BadForm
    return value.strip()


async def _posted(request: AnyRequest, session: ReviewerSession | None) -> tuple[ReviewerSession, dict[str, Any]]:
    """The form fields of a POST from `session` (as the caller loaded it), once its CSRF check
    passed: the session is then known to exist."""
    form = await request.form()
    fields = {key: form.get(key) for key in form.keys()}
    _check_post(request, session, fields)
    assert session is not None  # csrf_valid needs one
    return session, fields


async def _signed_in_post(request: AnyRequest) -> tuple[Reviewer, dict[str, Any]]:
    """A signed-in person's POST: who, and the form fields, once its CSRF check passed."""
    session, reviewer = await _signed_in(request)
    _, fields = await _posted(request, session)
    return reviewer, fields


def _local(path: str | None) -> str:
    """Where to go after sign-in: a path of this UI only, never another site (no open redirect)."""
    if not path or not path.startswith("/ui/") or path.startswith("//") or "\\" in path:
        return "/ui/"
    parts = urlsplit(path)
    return "/ui/" if parts.scheme or parts.netloc else path


def _base(session: ReviewerSession, reviewer: Reviewer, ui: ReviewerUI, **values: Any) -> dict[str, Any]:
    return {"me": reviewer, "csrf": session.csrf_token, "is_admin": ui.is_admin(reviewer), **values}


# -- sign-in --------------------------------------------------------------------------------


@get("/")
async def root() -> Redirect:
    return Redirect("/ui/", status_code=302)


async def _login_page(
    request: AnyRequest, *, error: str | None = None, status: int = 200, notice: str | None = None, next_path: str | None = None
) -> Response[str]:
    """The sign-in page, with a pre-sign-in session that carries its form's CSRF token."""
    ui = _ui(request)
    session = await _session(request)
    cookies = []
    if session is None:
        session, cookie = await _start(ui)
        cookies.append(cookie)
    next_path = _local(next_path or request.query_params.get("next"))
    return ui.render(
        "login.html", status, cookies=cookies, csrf=session.csrf_token, next=next_path, error=error, notice=notice,
        local=bool(ui.accounts), oidc=ui.oidc is not None, oidc_name=ui.oidc_name, oidc_url="/ui/login/oidc?" + urlencode({"next": next_path}),
    )


@get("/ui/login")
async def login_page(request: AnyRequest) -> Response[str]:
    session = await _session(request)
    if session is not None and session.signed_in is not None:
        return Redirect(_local(request.query_params.get("next")), status_code=303)  # type: ignore[return-value]
    notice = "You are signed out." if request.query_params.get("signed_out") else None
    return await _login_page(request, notice=notice)


async def _begin(request: AnyRequest, session: ReviewerSession, who: SignedIn, next_path: str) -> Response[Any]:
    """A new session for the signed-in person (never the pre-sign-in one: no fixation)."""
    ui = _ui(request)
    started = await ui.sessions.sign_in(session, who, _now())
    if started is None:
        return await _login_page(request, error="This sign-in was already used. Sign in again.", status=400)
    value, signed_in = started
    log.info("reviewer signed in", extra={"reviewer": who.name, "entity": f"{who.entity_type}::{who.entity_id}", "method": who.method})
    return Redirect(next_path, status_code=303, cookies=[_cookie(ui, value, signed_in)])


@post("/ui/login", status_code=303)
async def login(request: AnyRequest) -> Response[Any]:
    ui = _ui(request)
    session, form = await _posted(request, await _session(request))
    name, password, next_path = _field(form, "username", 200), _field(form, "password", 1000), _field(form, "next", 2000)
    if not name or not password:
        return await _login_page(request, error="Enter your name and password.", status=400, next_path=next_path)
    async with ui.password_checks:
        who = await asyncio.to_thread(ui.accounts.sign_in, name, password)
    if who is None:
        log.warning("reviewer sign-in failed", extra={"reviewer": name})
        return await _login_page(request, error="Wrong name or password.", status=401, next_path=next_path)
    return await _begin(request, session, who, _local(next_path))


@get("/ui/login/oidc")
async def oidc_begin(request: AnyRequest) -> Response[Any]:
    ui = _ui(request)
    if ui.oidc is None:
        return await _login_page(request, error="Single sign-on is not configured.", status=404)
    session = await _session(request)
    cookies = []
    if session is None or session.signed_in is not None:
        session, cookie = await _start(ui)
        cookies.append(cookie)
    from services.reviewer.oidc import SignInFailed

    try:
        url, login_state = await ui.oidc.begin(_local(request.query_params.get("next")))
    except SignInFailed as exc:
        return await _login_page(request, error=f"Single sign-on failed: {exc}.", status=502)
    await ui.sessions.remember_login(session, login_state)
    return Redirect(url, status_code=303, cookies=cookies)


@get("/ui/login/oidc/callback")
async def oidc_callback(request: AnyRequest) -> Response[Any]:
    ui = _ui(request)
    session = await _session(request)
    login_state = session.oidc_login if session else None
    state, code = request.query_params.get("state"), request.query_params.get("code")
    if ui.oidc is None or session is None or login_state is None or not same_secret(login_state.state, state):
        return await _login_page(request, error="This sign-in did not start here, or took too long. Sign in again.", status=400)
    from services.reviewer.oidc import SignInFailed

    if not code:
        error = request.query_params.get("error") or "no code"
        return await _login_page(request, error=f"The identity provider did not sign you in ({error[:100]}).", status=400)
    try:
        who = await ui.oidc.finish(login_state, code)
    except SignInFailed as exc:
        log.warning("reviewer single sign-on refused", extra={"error": str(exc)})
        return await _login_page(request, error=f"Single sign-on failed: {exc}.", status=400)
    return await _begin(request, session, who, login_state.next)


@post("/ui/logout", status_code=303)
async def logout(request: AnyRequest) -> Response[Any]:
    ui = _ui(request)
    session = await _session(request)
    if session is not None:  # else already over: nothing to protect, just forget the cookie
        await _posted(request, session)
        await ui.sessions.end(session)
    return Redirect("/ui/login?signed_out=1", status_code=303, cookies=[_cookie(ui, "", None)])


# -- inbox ----------------------------------------------------------------------------------


def _filters(request: AnyRequest) -> dict[str, str]:
    query = request.query_params
    return {
        "template": (query.get("template") or "")[:100],
        "risk": query.get("risk") if query.get("risk") in RISKS else "",
        "age": query.get("age") if query.get("age") in views.AGES else "",
    }


async def _inbox(request: AnyRequest, reviewer: Reviewer) -> dict[str, Any]:
    now = _now()
    tasks = await _ui(request).service.inbox(reviewer, now)
    chosen = _filters(request)
    shown = views.filtered(tasks, now, template=chosen["template"], risk=chosen["risk"], age_filter=chosen["age"])
    return {
        "tasks": shown, "total": len(tasks), "now": now, "filters": chosen, "ages": views.AGES,
        "by_template": views.counts(tasks, "template"), "by_risk": views.counts(tasks, "risk"),
        "query": urlencode({k: v for k, v in chosen.items() if v}), "age_of": views.age, "chain": views.acting_chain,
    }


@get("/ui/")
async def inbox(request: AnyRequest) -> Response[str]:
    session, reviewer = await _signed_in(request)
    ui = _ui(request)
    return ui.render("inbox.html", **_base(session, reviewer, ui, **await _inbox(request, reviewer)))


@get("/ui/inbox/rows")
async def inbox_rows(request: AnyRequest) -> Response[str]:
    session, reviewer = await _signed_in(request)
    ui = _ui(request)
    return ui.render("inbox_rows.html", **_base(session, reviewer, ui, **await _inbox(request, reviewer)))


@get("/ui/events")
async def events(request: AnyRequest) -> ServerSentEvent:
    """`tasks` whenever any task changed (the page fetches its list again), and a comment every
    KEEPALIVE_SECONDS; the stream ends when the session does."""
    await _signed_in(request)
    ui = _ui(request)
    cookie = request.cookies.get(ui.sessions.cookie_name)

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        seen = await ui.live.current()
        yield ServerSentEventMessage(event="ready", data=str(seen), retry=3000)
        while True:
            head = await ui.live.wait(seen, KEEPALIVE_SECONDS)
            session = await ui.sessions.load(cookie, datetime.now(UTC))
            if session is None or session.signed_in is None:
                return
            if head is None:
                yield ServerSentEventMessage(comment="keep-alive")
            else:
                seen = head
                yield ServerSentEventMessage(event="tasks", data=str(head))

    return ServerSentEvent(stream(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- a request ------------------------------------------------------------------------------

DONE = {"approved": "approve", "denied": "deny", "commented": None, "cancelled": None}


async def _task_page(request: AnyRequest, task_id: str, *, status: int = 200, error: str | None = None) -> Response[str]:
    session, reviewer = await _signed_in(request)
    ui = _ui(request)
    now = _now()
    admin = ui.is_admin(reviewer)
    detail = await ui.service.detail(reviewer, task_id, now, admin=admin)
    trail = await ui.service.audit_trail(task_id)
    done = request.query_params.get("done")
    # A confirmation only for what this reviewer really did: the query cannot invent one.
    verb = DONE.get(done) if done else None
    confirmed = done if done in DONE and (verb is None or _decided(detail, reviewer, verb)) else None
    return ui.render(
        "task.html", status, **_base(
            session, reviewer, ui, task=detail, trail=trail, now=now, error=error, confirmed=confirmed,
            chain=views.acting_chain(detail["subject"], detail.get("client")), details=views.authorization_details(detail["context"]),
            context_rows=views.context_rows(detail["context"]), requested=views.requested_duration(detail),
            durations=views.duration_choices(now, detail["max_approved_until"]) if detail["can_decide"] else [],
            must_confirm=views.needs_confirmation(detail["risk"]), age=views.age(detail["created_at"], now),
        ),
    )


@get("/ui/tasks/{task_id:str}")
async def task_page(request: AnyRequest, task_id: FromPath[str]) -> Response[str]:
    return await _task_page(request, task_id)


async def _decide(request: AnyRequest, task_id: str, verb: str) -> Response[Any]:
    """Approve or deny. The same form sent again (a double click, a resent form) after this
    reviewer's decision of that step went through lands on the same confirmation: idempotent
    for people. Any other refusal is shown as it is."""
    reviewer, form = await _signed_in_post(request)
    ui = _ui(request)
    now = _now()
    admin = ui.is_admin(reviewer)
    comment = _field(form, "comment", 2000) or None
    step = _field(form, "step", 10)
    try:
        if verb == "approve":
            detail = await ui.service.detail(reviewer, task_id, now, admin=admin)
            if views.needs_confirmation(detail["risk"]) and form.get("confirm") != "yes" and detail["can_decide"]:
                return await _task_page(request, task_id, status=400, error="Confirm that you reviewed this high-risk request before approving it.")
            body: dict[str, Any] = {"comment": comment}
            until = _field(form, "approved_until", 40)
            if until:  # the instant the page showed; the service refuses one past its cap
                body["approved_until"] = until
            await ui.service.approve(reviewer, task_id, body, now)
        else:
            await ui.service.deny(reviewer, task_id, {"reason": _field(form, "reason", 2000), "comment": comment}, now)
    except (ReviewRefused, InvalidTaskState) as refused:
        if isinstance(refused, ReviewRefused) and refused.refusal != "already_decided" or not _decided(await ui.service.detail(reviewer, task_id, now, admin=admin), reviewer, verb, step):
            raise
    return Redirect(f"/ui/tasks/{task_id}?done={'approved' if verb == 'approve' else 'denied'}", status_code=303)


def _decided(detail: dict[str, Any], reviewer: Reviewer, verb: str, step: str | None = None) -> bool:
    """Whether this reviewer made decision `verb` (on step `step`, 1-based as the form sent it,
    when given)."""
    me = {"type": reviewer.entity_type, "id": reviewer.entity_id}
    return any(d["approver"] == me and d["decision"] == verb and (step is None or str(d["step"]) == step) for d in detail["decisions"])


@post("/ui/tasks/{task_id:str}/approve", status_code=303)
async def approve(request: AnyRequest, task_id: FromPath[str]) -> Response[Any]:
    return await _decide(request, task_id, "approve")


@post("/ui/tasks/{task_id:str}/deny", status_code=303)
async def deny(request: AnyRequest, task_id: FromPath[str]) -> Response[Any]:
    return await _decide(request, task_id, "deny")


@post("/ui/tasks/{task_id:str}/comment", status_code=303)
async def comment(request: AnyRequest, task_id: FromPath[str]) -> Response[Any]:
    reviewer, form = await _signed_in_post(request)
    ui = _ui(request)
    await ui.service.comment(reviewer, task_id, {"comment": _field(form, "comment", 2000)}, _now(), admin=ui.is_admin(reviewer))
    return Redirect(f"/ui/tasks/{task_id}?done=commented#comments", status_code=303)


# -- my requests, administration ------------------------------------------------------------


@get("/ui/requests")
async def my_requests(request: AnyRequest) -> Response[str]:
    session, reviewer = await _signed_in(request)
    ui = _ui(request)
    tasks = await ui.service.requests_of(reviewer)
    return ui.render("requests.html", **_base(session, reviewer, ui, tasks=tasks, now=_now(), age_of=views.age))


async def _admin(request: AnyRequest) -> tuple[ReviewerSession, Reviewer]:
    session, reviewer = await _signed_in(request)
    if not _ui(request).is_admin(reviewer):
        raise NotAdmin
    return session, reviewer


STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "partially_approved")


@get("/ui/admin")
async def admin(request: AnyRequest) -> Response[str]:
    session, reviewer = await _admin(request)
    ui = _ui(request)
    query = (request.query_params.get("q") or "")[:200]
    status = request.query_params.get("status") if request.query_params.get("status") in STATUSES else ""
    tasks = await ui.service.search(query, status or None)
    return ui.render("admin.html", **_base(session, reviewer, ui, tasks=tasks, q=query, status=status, statuses=STATUSES, now=_now(), age_of=views.age))


@get("/ui/admin/audit")
async def audit(request: AnyRequest) -> Response[str]:
    session, reviewer = await _admin(request)
    from services.store.audit import stored_chain, verify_audit_chain

    ui = _ui(request)
    events, head = await stored_chain(request.app.state.store)
    problems = await asyncio.to_thread(verify_audit_chain, events, head=head)  # CPU-bound: off the loop
    return ui.render("audit.html", **_base(session, reviewer, ui, count=len(events), head=head, problems=problems[:50], more=max(len(problems) - 50, 0)))


@post("/ui/admin/tasks/{task_id:str}/cancel", status_code=303)
async def cancel(request: AnyRequest, task_id: FromPath[str]) -> Response[Any]:
    session, reviewer = await _admin(request)
    _, form = await _posted(request, session)
    reason = _field(form, "reason", 500) or "cancelled by an administrator"
    # The administrator acts as a caller allowed to cancel any subject's requests; the audit
    # event names them.
    caller = Caller(f"admin:{reviewer.name}", frozenset({"cancel"}))
    await _ui(request).service.cancel(caller, task_id, {"reason": reason}, _now())
    return Redirect(f"/ui/tasks/{task_id}?done=cancelled", status_code=303)


# -- errors as pages ------------------------------------------------------------------------


def _error_page(request: AnyRequest, status: int, title: str, message: str) -> Response[str]:
    if request.headers.get("hx-request") and status == 401:
        return Response("", status_code=401, headers={"HX-Redirect": "/ui/login"})
    return _ui(request).render("error.html", status, title=title, message=message)


def on_sign_in_required(request: AnyRequest, _: SignInRequired) -> Response[Any]:
    if request.headers.get("hx-request") or request.url.path == "/ui/events":
        return _error_page(request, 401, "Signed out", "Sign in again.")
    # Back to the page after sign-in; a form's target only answers POST: back to the inbox then.
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "") if request.method == "GET" else "/ui/"
    return Redirect("/ui/login?" + urlencode({"next": _local(target)}), status_code=303)


def on_csrf(request: AnyRequest, _: CsrfRejected) -> Response[Any]:
    log.warning("reviewer UI: a form without a valid CSRF token was refused", extra={"path": request.url.path})
    return _error_page(request, 403, "Form refused", "This form did not come from this page, or your session changed. Go back, reload the page and try again.")


def on_bad_form(request: AnyRequest, _: BadForm) -> Response[Any]:
    return _error_page(request, 400, "Not accepted", "A field of the form was too long or not text.")


def on_not_admin(request: AnyRequest, _: NotAdmin) -> Response[Any]:
    return _error_page(request, 403, "Administrators only", "This page is for administrators.")


def _sentence(text: str) -> str:
    """A service message as a sentence: capitalised, ending with a full stop."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def on_review_refused(request: AnyRequest, exc: ReviewRefused) -> Response[Any]:
    return _error_page(request, 403, "You cannot decide this request", _sentence(exc.detail))


def on_forbidden(request: AnyRequest, exc: Forbidden) -> Response[Any]:
    return _error_page(request, 403, "Not allowed", str(exc))


def on_arap_error(request: AnyRequest, exc: ARAPError) -> Response[Any]:
    titles = {404: "No such request", 409: "This request cannot change now", 410: "This request expired"}
    return _error_page(request, exc.status, titles.get(exc.status, "Not accepted"), _sentence(exc.detail))


def on_store_unavailable(request: AnyRequest, _: StoreUnavailable) -> Response[Any]:
    return _error_page(request, 503, "Temporarily unavailable", "The service cannot reach its database. Nothing was changed; try again in a moment.")


def _secure(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


router = Router(
    "/",
    route_handlers=[
        root, login_page, login, oidc_begin, oidc_callback, logout, inbox, inbox_rows, events, task_page, approve, deny, comment, my_requests, admin,
        audit, cancel,
        create_static_files_router(path="/ui/static", directories=[HERE / "static"], name="reviewer-static", cache_control=None, send_as_attachment=False),
    ],
    exception_handlers={
        SignInRequired: on_sign_in_required, CsrfRejected: on_csrf, BadForm: on_bad_form, NotAdmin: on_not_admin, ReviewRefused: on_review_refused, Forbidden: on_forbidden,
        ARAPError: on_arap_error, StoreUnavailable: on_store_unavailable,
    },
    after_request=_secure,
)
