"""Subject, resource and action search rules (spec/authzen-api.md §6).

Pagination is opaque-token based (AZ-20..AZ-25). A token carries the offset and limit and an
HMAC over them and over a fingerprint of the query, so a client can neither forge an offset nor
reuse a token with other entities (AZ-22/AZ-23: 400 on a changed continuation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Sequence
from typing import Literal, TypeVar

import msgspec

from profiles.authzen.errors import InvalidRequest
from profiles.authzen.model import (
    ActionSearchRequest,
    PageRequest,
    PageResponse,
    ResourceSearchRequest,
    SubjectSearchRequest,
)

SearchKind = Literal["subject", "resource", "action"]
SearchRequest = SubjectSearchRequest | ResourceSearchRequest | ActionSearchRequest
T = TypeVar("T")

_TOKEN_VERSION = 1
_TOKEN_LAYOUT = struct.Struct(">BII")  # version, offset, limit
_MAC_BYTES = 16
_canonical = msgspec.json.Encoder(order="sorted")


def query_fingerprint(kind: SearchKind, request: SearchRequest) -> bytes:
    """What a continuation must repeat unchanged (AZ-22): every entity and the context.

    The id of the searched-for entity is left out because it is ignored (AZ-18), and so are the
    page members, which the token itself carries.
    """
    subject = request.subject
    resource = request.resource
    parts: dict[str, object] = {"kind": kind, "context": request.context}
    parts["subject"] = {"type": subject.type, "properties": subject.properties} if kind == "subject" else subject
    parts["resource"] = (
        {"type": resource.type, "properties": resource.properties} if kind == "resource" else resource
    )
    if not isinstance(request, ActionSearchRequest):
        parts["action"] = request.action
    return hashlib.sha256(_canonical.encode(parts)).digest()


def _mac(key: bytes, fingerprint: bytes, header: bytes) -> bytes:
    return hmac.new(key, fingerprint + header, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_page_token(key: bytes, fingerprint: bytes, offset: int, limit: int) -> str:
    header = _TOKEN_LAYOUT.pack(_TOKEN_VERSION, offset, limit)
    return base64.urlsafe_b64encode(header + _mac(key, fingerprint, header)).rstrip(b"=").decode()


def decode_page_token(key: bytes, fingerprint: bytes, token: str) -> tuple[int, int]:
    """Return (offset, limit) of a token issued for this very query, else 400 (AZ-23)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise InvalidRequest("page.token is not a token this PDP issued") from None
    header, mac = raw[: _TOKEN_LAYOUT.size], raw[_TOKEN_LAYOUT.size :]
    if len(header) != _TOKEN_LAYOUT.size or len(mac) != _MAC_BYTES:
        raise InvalidRequest("page.token is not a token this PDP issued")
    if not hmac.compare_digest(mac, _mac(key, fingerprint, header)):
        raise InvalidRequest("page.token does not belong to this query: a continuation must repeat it unchanged")
    version, offset, limit = _TOKEN_LAYOUT.unpack(header)
    if version != _TOKEN_VERSION:
        raise InvalidRequest("page.token is not a token this PDP issued")
    return offset, limit


def paginate(
    matches: Sequence[T],
    page: PageRequest | None,
    *,
    key: bytes,
    fingerprint: bytes,
    max_limit: int,
) -> tuple[list[T], PageResponse]:
    """Cut one page out of the complete, stably ordered result set.

    AZ-21/AZ-24: a partial answer carries a non-empty `next_token`; the last page has "".
    A continuation without `limit` keeps the token's limit (§6.6 ambiguity note); a different
    `limit` is a changed parameter (AZ-23). `limit: 0` returns no results and a `next_token`
    that is non-empty iff anything matches. Requested limits are capped at `max_limit` (AZ-55).
    """
    requested = page.limit if page else None
    if requested is not None:
        requested = min(requested, max_limit)
    if page and page.token:
        offset, limit = decode_page_token(key, fingerprint, page.token)
        if requested is not None and requested != limit:
            raise InvalidRequest("page.limit differs from the request this token continues")
    else:
        offset, limit = 0, requested if requested is not None else max_limit
    results = list(matches[offset : offset + limit])
    end = offset + len(results)
    next_token = encode_page_token(key, fingerprint, end, limit) if end < len(matches) else ""
    return results, PageResponse(next_token=next_token, count=len(results), total=len(matches))
