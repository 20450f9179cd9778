"""RFC 8785 JSON Canonicalization Scheme and the AR-25 `binding_hash`.

JCS is the deterministic serialisation behind the hash binding (AR-25) and the idempotency body
equivalence (AR-47). Input is plain parsed JSON (dict/list/str/int/float/bool/None).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from profiles.arap.compare import Covered, bound_document

_MAX_SAFE_INTEGER = 2**53


def canonicalize(value: Any) -> bytes:
    """RFC 8785 §3: UTF-8 bytes of the canonical form; ValueError for what JSON (as I-JSON)
    cannot carry: NaN, infinities, numbers beyond IEEE-754 double, lone surrogates."""
    try:
        return _serialize(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("strings must be valid Unicode (lone surrogate)") from None


def _serialize(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, str):
        # RFC 8785 §3.2.2.2: exactly ECMAScript JSON.stringify escaping, which json.dumps
        # reproduces with ensure_ascii=False (\b \t \n \f \r short forms, other controls as
        # lowercase \u00xx, '/' and non-ASCII literal).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_serialize(item) for item in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError("object member names must be strings")
        # RFC 8785 §3.2.3: sort by UTF-16 code units; UTF-16BE bytes compare the same way.
        keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_serialize(key) + ":" + _serialize(value[key]) for key in keys) + "}"
    raise ValueError(f"not a JSON value: {type(value).__name__}")


def format_number(number: float) -> str:
    """RFC 8785 §3.2.2.3: ECMAScript Number.prototype.toString of the IEEE-754 double.

    Integers inside the safe range are exact. Everything else goes through the double, whose
    shortest round-trip digits (Python's repr) are laid out per ECMA-262 Number::toString:
    plain up to 21 integer digits, `0.000…` down to 1e-6, exponent form otherwise.
    """
    if isinstance(number, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(number, int) and -_MAX_SAFE_INTEGER < number < _MAX_SAFE_INTEGER:
        return str(number)
    try:
        double = float(number)
    except OverflowError:
        raise ValueError("number outside the IEEE-754 double range") from None
    if not math.isfinite(double):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if double == 0:
        return "0"  # also -0
    sign = "-" if double < 0 else ""
    digits_tuple = Decimal(repr(abs(double))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple.digits))
    k = len(digits)
    n = k + int(digits_tuple.exponent)  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"
    return sign + text


def _b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def binding_hash(covered: Covered, members: Sequence[str] | None) -> str:
    """AR-25: base64url_nopad(SHA-256(JCS(bound document))), single or bulk form per `covered`."""
    return _b64url_sha256(canonicalize(bound_document(covered, members)))

