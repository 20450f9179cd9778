"""Callback completion (spec/arap.md §13): SSRF-safe endpoint validation (AR-77), HMAC
authentication of the ARS to the PEP (AR-78) and the callback body (AR-79).

Name resolution is the service's job (at submission and again at delivery, against DNS
rebinding); these rules take the resolved addresses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from profiles.arap.errors import BadRequest
from profiles.arap.model import Callback, CallbackBody, Result, Task

# AR-78: header, algorithm and encoding are per deployment; this is ours (D-ARAP-12).
SIGNATURE_HEADER = "AROP-Signature"
TERMINAL_EVENTS = frozenset({"approved", "denied", "expired", "cancelled", "failed", "partial"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_callback_uri(url: str, registered: Collection[str]) -> None:
    """AR-77: HTTPS, no userinfo or fragment, and pre-registered for the PEP or allowlisted.

    A registered entry matches exactly, or as a prefix when it ends with `/` (a path under a
    registered origin; the `/` ends the authority, so the host cannot be extended).
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise BadRequest("callback.endpoint must be an absolute https URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise BadRequest("callback.endpoint must not carry userinfo or a fragment")
    if not any(url == entry or (entry.endswith("/") and url.startswith(entry)) for entry in registered):
        raise BadRequest("callback.endpoint is not registered for this caller")


def destination(text: str) -> IPAddress:
    """The address a connection reaches: an IPv4-mapped IPv6 address is its IPv4 address
    (Python 3.11's ipaddress does not look through the mapping); a zone index is dropped."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_internal(address: IPAddress) -> bool:
    """Loopback, link-local, private-use, shared, reserved, multicast, unspecified or otherwise
    not globally routable."""
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


def check_callback_addresses(addresses: Iterable[str], allowed_networks: Collection[str] = ()) -> None:
    """AR-77 SSRF default-deny: every resolved address must be public unless it lies in an
    explicitly allowlisted network (CIDR). No address at all is a rejection too."""
    networks = [ipaddress.ip_network(network, strict=False) for network in allowed_networks]
    resolved = list(addresses)
    if not resolved:
        raise BadRequest("callback.endpoint does not resolve")
    for text in resolved:
        try:
            address = destination(text)
        except ValueError:
            raise BadRequest(f"callback.endpoint resolves to an invalid address {text!r}") from None
        if is_internal(address) and not any(address in network for network in networks):
            raise BadRequest("callback.endpoint resolves to an internal address that is not allowlisted")


def check_callback_endpoint(
    url: str, resolved_addresses: Iterable[str], *, registered: Collection[str], allowed_networks: Collection[str] = ()
) -> None:
    """AR-77 at submission: the URI rule, then every resolved address (400 on failure).
    At delivery, call `check_callback_addresses` again with a fresh resolution."""
    check_callback_uri(url, registered)
    check_callback_addresses(resolved_addresses, allowed_networks)


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def callback_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """AR-78 (c): `t=<unix seconds>,v1=<base64url HMAC-SHA256(secret, "<t>." + raw body)>`.
    The timestamp is signed so that a captured callback cannot be replayed later."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_callback_signature(
    secret: bytes, header: str, body: bytes, *, now: datetime, window: timedelta
) -> bool:
    """The PEP's counterpart (AR-78, AR-81): a well-formed header, a timestamp within `window`
    of `now`, and the MAC compared in constant time."""
    fields = dict(part.strip().partition("=")[::2] for part in header.split(","))
    timestamp_text, mac = fields.get("t", ""), fields.get("v1", "")
    if not timestamp_text.isascii() or not timestamp_text.isdigit():
        return False
    timestamp = int(timestamp_text)
    if abs(now.timestamp() - timestamp) > window.total_seconds():
        return False
    return hmac.compare_digest(mac.encode(), _mac(secret, timestamp, body).encode())


def wants_event(callback: Callback, status: str) -> bool:
    """AR-79 Impl: a terminal status is notified if subscribed; without `events`, every one."""
    if status not in TERMINAL_EVENTS:
        return False
    return callback.events is None or status in callback.events


def callback_body(callback: Callback, task: Task, result: Result | None = None) -> CallbackBody:
    """AR-79: the task, optionally a §12 result, and the submission's `state` unmodified."""
    return CallbackBody(task=task, state=callback.state, result=result)
