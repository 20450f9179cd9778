"""OP-12, TX-37, TX-67: what the AS advertises for each transport the sidecar serves."""

from __future__ import annotations

from profiles.arop.metadata import as_metadata


def test_op_12_every_transport_is_advertised_with_its_own_members() -> None:
    served = as_metadata(transports=["txn", "ciba", "dtr"], delivery_modes=["poll", "ping"], details_types=["trade", "portfolio_read"])
    assert served.transports == ["dtr", "ciba", "txn"]
    assert served.metadata == {
        "deferred_token_response_supported": True,
        "revocation_endpoint_token_type_values_supported": ["urn:ietf:params:oauth:token-type:deferral-code"],
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_user_code_parameter_supported": False,
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:deferred", "urn:openid:params:grant-type:ciba"],
        "authorization_details_types_supported": ["portfolio_read", "trade"],
    }


def test_op_12_a_transport_not_served_is_not_advertised() -> None:
    served = as_metadata(transports=["dtr"], delivery_modes=["poll"], details_types=[])
    assert served.transports == ["dtr"]
    assert not {k for k in served.metadata if k.startswith("backchannel")}
    assert served.metadata["grant_types_supported"] == ["urn:ietf:params:oauth:grant-type:deferred"]
    assert "authorization_details_types_supported" not in served.metadata
