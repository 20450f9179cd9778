"""What the AS advertises for AROP (spec/arop.md §4, OP-12; oauth-transports.md TX-37, TX-67).

AROP adds no metadata of its own: each enabled transport is advertised with its own RFC 8414
members, by the AS (the party that issues tokens). The sidecar knows which transports it serves
and what they support; the AS knows its endpoint URLs. `as_metadata` gives the members the AS
merges into its metadata document, and `transports` the ones it must add its endpoint for:
`revocation_endpoint` (DTR), `backchannel_authentication_endpoint` (CIBA),
`transaction_authorization_endpoint` (txn).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from profiles.arop import ciba, dtr

Transport = Literal["dtr", "ciba", "txn"]


class SidecarMetadata(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """GET /oauth/v1/metadata: the transports served, and the RFC 8414 members for them."""

    transports: list[Transport]
    metadata: dict[str, Any]


def as_metadata(*, transports: Iterable[Transport], delivery_modes: Iterable[str], details_types: Iterable[str]) -> SidecarMetadata:
    """OP-12 table: DTR `deferred_token_response_supported`, its polling grant and the deferral
    code revocation type; CIBA its grant and delivery modes (no user codes: approval happens in
    the ARS, OP-49); RAR the types the bundle's vocabulary maps (TX-67). The txn binding has no
    member but its endpoint (TX-37)."""
    served = sorted(set(transports), key=["dtr", "ciba", "txn"].index)
    grant_types: list[str] = []
    members: dict[str, Any] = {}
    if "dtr" in served:
        grant_types.append(dtr.GRANT_TYPE)
        members["deferred_token_response_supported"] = True
        members["revocation_endpoint_token_type_values_supported"] = [dtr.DEFERRAL_CODE_HINT]
    if "ciba" in served:
        grant_types.append(ciba.GRANT_TYPE)
        members["backchannel_token_delivery_modes_supported"] = list(delivery_modes)
        members["backchannel_user_code_parameter_supported"] = False
    members["grant_types_supported"] = grant_types
    types = sorted(set(details_types))
    if types:
        members["authorization_details_types_supported"] = types
    return SidecarMetadata(transports=served, metadata=members)
