"""The requestable denial the PDP emits (spec/arap.md §2, AR-6..AR-12)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from profiles.arap.discovery import is_https_or_loopback
from profiles.arap.model import (
    AccessRequestHint,
    JSONObject,
    format_instant,
    parse_instant,
)


def requestable_denial_context(
    hint: AccessRequestHint, *, evaluation_id: str | None, evaluated_at: datetime, reason: str | None
) -> JSONObject:
    """The Decision Context members of a requestable denial (§2); ValueError when the PDP would
    break a rule: AR-9 (an RFC 3339 `expires_at` and verifiable binding material), AR-10 (no
    token ⇒ `evaluation_id`), AR-11 (`request_catalogs_url` only with `request_schema_url`).
    The AR-9 "otherwise omit `access_request`" is the caller's: it catches the ValueError and
    answers a plain denial. `reason` is SHOULD (AR-12) and machine-readable."""
    parse_instant(hint.expires_at)
    if not hint.binding_token and not evaluation_id:
        raise ValueError("a requestable denial needs a binding_token or an evaluation_id (AR-9, AR-10)")
    if hint.request_catalogs_url and not hint.request_schema_url:
        raise ValueError("request_catalogs_url only together with request_schema_url (AR-11)")
    for url in (hint.endpoint, hint.form_url, hint.request_schema_url, hint.request_catalogs_url):
        if url is not None and not is_https_or_loopback(url):
            raise ValueError(f"access_request URLs are HTTPS (§2): {url!r}")
    context: JSONObject = {"evaluated_at": format_instant(evaluated_at), "access_request": msgspec.to_builtins(hint)}
    if evaluation_id:
        context["evaluation_id"] = evaluation_id
    if reason:
        context["reason"] = reason
    return context
