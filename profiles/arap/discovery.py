"""ARAP discovery additions to the PDP metadata (spec/arap.md §1, AR-1..AR-3)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import msgspec

from profiles.authzen.model import Metadata

CAPABILITY = "urn:openid:authzen:capability:access-request"


class ArapMetadata(Metadata):
    """§1: the AuthZEN metadata plus `access_request_endpoint` (`jwks_uri` is AuthZEN's own)."""

    access_request_endpoint: str | None = None


def with_access_request(metadata: Metadata, *, access_request_endpoint: str, jwks_uri: str) -> ArapMetadata:
    """AR-1: publish the endpoint the PEP actually uses; AR-2: the capability URN, once;
    AR-3: `jwks_uri` for binding tokens and approval states. Both HTTPS (D-ARAP-13: plain
    HTTP only on a loopback host, for the out-of-the-box local service)."""
    for member, url in (("access_request_endpoint", access_request_endpoint), ("jwks_uri", jwks_uri)):
        if not is_https_or_loopback(url):
            raise ValueError(f"{member} must be an https URL")
    capabilities = list(metadata.capabilities or [])
    if CAPABILITY not in capabilities:
        capabilities.append(CAPABILITY)
    return ArapMetadata(
        **msgspec.structs.asdict(metadata)
        | {
            "capabilities": capabilities,
            "jwks_uri": jwks_uri,
            "access_request_endpoint": access_request_endpoint,
            "signed_metadata": None,  # a signature over the old members would assert too little
        }
    )


def is_https_or_loopback(url: str) -> bool:
    """An absolute https URL, or http on a loopback host (D-ARAP-13)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False
