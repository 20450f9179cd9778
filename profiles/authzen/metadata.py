"""PDP metadata: the discovery document (spec/authzen-api.md §7)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from typing import TYPE_CHECKING

import msgspec

from profiles.authzen.model import Metadata

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

WELL_KNOWN = "/.well-known/authzen-configuration"

ENDPOINT_PATHS = {
    "access_evaluation_endpoint": "/access/v1/evaluation",
    "access_evaluations_endpoint": "/access/v1/evaluations",
    "search_subject_endpoint": "/access/v1/search/subject",
    "search_resource_endpoint": "/access/v1/search/resource",
    "search_action_endpoint": "/access/v1/search/action",
}


def metadata_path(pdp_identifier: str) -> str:
    """AZ-31: the well-known suffix goes between host and path, not after the path.
    One trailing `/` of the path is dropped first (§7.2 ambiguity note)."""
    path = urlsplit(pdp_identifier).path.rstrip("/")
    return WELL_KNOWN + path


def build_metadata(
    pdp_identifier: str, *, capabilities: list[str] | None = None, jwks_uri: str | None = None
) -> Metadata:
    """AZ-27..AZ-29: absolute endpoint URLs from the configured identifier (never the Host
    header), and no member without a value (no null, no empty array)."""
    base = pdp_identifier.rstrip("/")
    return Metadata(
        policy_decision_point=base,
        capabilities=capabilities or None,
        jwks_uri=jwks_uri,
        **{member: base + path for member, path in ENDPOINT_PATHS.items()},
    )


def sign_metadata(metadata: Metadata, key: ECKey, *, ttl_seconds: int, now: float | None = None) -> Metadata:
    """AZ-35/AZ-36: an ES256 JWT whose claims are the metadata members, `iss` the PDP identifier,
    and which never contains a `signed_metadata` claim itself."""
    from joserfc import jwt  # only deployments that sign metadata pay for loading it

    claims = {k: v for k, v in msgspec.to_builtins(metadata).items() if k != "signed_metadata"}
    issued_at = int(now if now is not None else time.time())
    claims.update(iss=metadata.policy_decision_point, iat=issued_at, exp=issued_at + ttl_seconds)
    token = jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, claims, key)
    return msgspec.structs.replace(metadata, signed_metadata=token)
