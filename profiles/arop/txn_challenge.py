"""OAuth Transaction Authorization Challenge (spec/arop.md §11.3, oauth-transports.md §4): the
capability header, the AS validation checklist over the RS-signed challenge, replay and dedup
admission, and the endpoint's 200 answer.

Every failure to validate a challenge is `invalid_request` at the transaction authorization
endpoint (D-3, TX-41); a policy refusal of what it describes is decided later, like any request.
The checks follow `profiles.arap.signed.verify_jwt`'s strictness with the algorithms an RS may
use (D-AROP-12): the algorithm is fixed before any key is looked up, the key comes only from
the recognized RS's keys, and nothing in the claims is used before the signature verifies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from profiles.arap.model import JSONObject
from profiles.arap.signed import UnverifiedToken, lifetime, numeric_date, verify_jwt
from profiles.arop.errors import INVALID_REQUEST, OAuthFailure
from profiles.arop.model import Relay
from profiles.arop.requested import Requested

if TYPE_CHECKING:
    from joserfc.jwk import Key

TYP = "txn-authz-challenge+jwt"
ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "Ed25519")
"""TX-32, D-AROP-12: asymmetric only; never `none` or HMAC (an RS's public key as a secret)."""

KeyResolver = Callable[[str, str | None], "Key | None"]
"""`(iss, kid) -> key`: a verification key of a recognized RS (OP-78, TX-33), else None."""

# -- TX-29: Accept-Txn-Challenge, an RFC 9651 Item whose only meaningful value is `?1` -------

_KEY = r"[a-z*][a-z0-9_\-.*]*"
_BARE_ITEMS = (
    r"-?[0-9]{1,12}\.[0-9]{1,3}",  # decimal
    r"-?[0-9]{1,15}",  # integer
    r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"',  # string
    r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*",  # token
    r":[A-Za-z0-9+/]*=*:",  # byte sequence
    r"\?[01]",  # boolean
    r"@-?[0-9]{1,15}",  # date
    r'%"(?:[\x20\x21\x23\x24\x26-\x5b\x5d-\x7e]|%[0-9a-f]{2})*"',  # display string
)
_TRUE_ITEM = re.compile(rf"\?1(?:; *{_KEY}(?:=(?:{'|'.join(_BARE_ITEMS)}))?)*")


def accepts_txn_challenge(field_lines: Sequence[str]) -> bool:
    """TX-29: the agent advertised support only with the Boolean true (`?1`), parameters
    ignored. `?0`, any other type, an unparsable value, or a List made by repeating the header
    (lines combine with `,`) all count as absent."""
    combined = ", ".join(field_lines).strip(" \t")
    return _TRUE_ITEM.fullmatch(combined) is not None


# -- TX-32..TX-34, TX-42: the challenge ---------------------------------------------------------


class VerifiedChallenge(msgspec.Struct, frozen=True):
    """A challenge that passed the TX-42 checklist; its claims may now drive decisions."""

    iss: str
    jti: str
    txn: str
    authorization_details: tuple[JSONObject, ...]
    reason: str
    issued_at: datetime
    expires_at: datetime
    act: JSONObject | None = None
    reason_uri: str | None = None

    def requested(self) -> Requested:
        """TX-42, TX-44: the operation is the signed `authorization_details`, nothing else."""
        return Requested(authorization_details=self.authorization_details)


def _invalid(detail: str) -> OAuthFailure:
    """D-3: the detail may quote the challenge's own `alg`, `iss` or `kid`; `OAuthFailure.response`
    keeps what reaches the client short and NQSCHAR (OP-72, TX-4)."""
    return OAuthFailure(INVALID_REQUEST, f"transaction_challenge {detail}")


def verify_challenge(
    token: str, *, resolve_key: KeyResolver, audience: str, now: datetime, skew: timedelta
) -> VerifiedChallenge:
    """OP-57, OP-78, TX-32..TX-34, TX-42, in order: compact JWS; `typ` and an accepted `alg`
    (no `crit`/`b64`); the key of a recognized RS by (`iss`, `kid`); the signature; `aud`
    names this AS; `exp`/`iat` (and `nbf`) within `skew`; the required claims well typed.
    Any failure → OAuthFailure(invalid_request) (D-3)."""
    try:
        verified = verify_jwt(
            token, resolve_key=_recognized(resolve_key), audience=audience, algorithms=ALGORITHMS, typ=TYP
        )
    except UnverifiedToken as exc:
        raise _invalid(f"rejected: {exc.detail}") from None
    challenge = read_challenge(verified.claims)
    _check_times(verified.claims, now, skew)
    return challenge


def read_challenge(claims: JSONObject) -> VerifiedChallenge:
    """The challenge its claims describe, each required claim present and well typed (TX-32,
    TX-42). Also how a challenge verified when its handle was created is read back (OP-59)."""
    try:
        issued_at, expires_at = numeric_date(claims, "iat"), numeric_date(claims, "exp")
    except ValueError:
        raise _invalid("iat, exp and nbf must be NumericDates") from None
    if issued_at is None or expires_at is None:
        raise _invalid("needs iat and exp")
    return VerifiedChallenge(
        iss=_string(claims, "iss"),
        jti=_string(claims, "jti"),
        txn=_string(claims, "txn"),
        authorization_details=_operation(claims),
        reason=_string(claims, "reason"),
        issued_at=issued_at,
        expires_at=expires_at,
        act=_optional(claims, "act", dict),
        reason_uri=_optional(claims, "reason_uri", str),
    )


def _recognized(resolve_key: KeyResolver) -> Callable[[str | None, str | None], Any]:
    """A challenge names its RS in `iss`; one without an `iss` string has no RS to trust."""

    def resolve(iss: str | None, kid: str | None) -> Any:
        return resolve_key(iss, kid) if isinstance(iss, str) else None

    return resolve


def _check_times(claims: JSONObject, now: datetime, skew: timedelta) -> None:
    """TX-32, TX-42: not expired, not issued in the future, not before `nbf` (RFC 7519), each
    within `skew`."""
    try:
        lifetime(claims, now=now, skew=skew)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _string(claims: JSONObject, name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"needs a non-empty string {name}")
    return value


def _optional(claims: JSONObject, name: str, kind: type[Any]) -> Any:
    value = claims.get(name)
    if value is not None and not isinstance(value, kind):
        raise _invalid(f"{name} is malformed")
    return value


def _operation(claims: JSONObject) -> tuple[JSONObject, ...]:
    """TX-42 "the operation is sufficiently described": a non-empty RAR array of typed objects."""
    details = claims.get("authorization_details")
    if (
        not isinstance(details, list)
        or not details
        or not all(isinstance(element, dict) and isinstance(element.get("type"), str) for element in details)
    ):
        raise _invalid("needs a non-empty authorization_details array of typed objects")
    return tuple(details)


# -- TX-43, OP-60: replay and dedup --------------------------------------------------------


def jti_memory_until(challenge: VerifiedChallenge, skew: timedelta) -> datetime:
    """TX-43: remember (`iss`, `jti`) as long as the challenge could still be accepted."""
    return challenge.expires_at + skew


class KnownTxn(msgspec.Struct, frozen=True):
    """What the store knows of a challenge's (`iss`, `txn`): who presented it (`dedup.presenter`),
    and is its handle still pending?"""

    presenter: str
    pending: bool


def admit_challenge(
    challenge: VerifiedChallenge, *, presenter: str, known: KnownTxn | None, jti_replayed: bool
) -> Literal["reuse", "open"]:
    """TX-43, OP-60, D-AROP-13, in order: a `txn` another presenter (another client, or the same
    one with another key or method) presented → invalid_request; the same presenter's pending
    request for this `txn` → reuse its handle (also for a resent identical
    challenge); a challenge (`iss`, `jti`) seen before → invalid_request; else open a new
    access request. `jti_replayed` is the atomic remember-and-test of (`iss`, `jti`)."""
    if known is not None and known.presenter != presenter:
        raise _invalid("belongs to another client's transaction")
    if known is not None and known.pending:
        return "reuse"
    if jti_replayed:
        raise _invalid("was already presented")
    return "open"


def accepted_response(transaction_authorization_id: str, expires_in: int, interval: int) -> Relay:
    """TX-38, OP-58: 200 "accepted for processing" (not approved) with the handle; the client
    polls the same endpoint."""
    return Relay(
        status=200,
        body={"transaction_authorization_id": transaction_authorization_id, "expires_in": expires_in, "interval": interval},
    )
