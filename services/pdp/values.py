"""AuthZEN property and context values → Cedar values.

AuthZEN allows any JSON value (§2.1); Cedar has no null and no floating point. The mapping:
- `null` members are absent (AZ-48: null means "no value");
- a number with an integral value is a Cedar Long (JSON does not distinguish 2 from 2.0);
- another number becomes a Cedar `decimal` when it has at most four fractional digits;
- anything Cedar cannot represent exactly (other fractions, integers outside 64 bits, null
  inside an array, nesting deeper than the limit) raises UnsupportedValue and the evaluation
  fails closed. Dropping such a value instead could silently disable a `forbid`.
Objects with a `__entity` or `__extn` key pass through: they are Cedar's entity-reference and
extension escapes, which let a PEP send e.g. an owner as an entity.
"""

from __future__ import annotations

from typing import Any

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_DECIMAL_LIMIT = 922337203685477


class UnsupportedValue(ValueError):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path


def to_cedar_record(value: dict[str, Any], path: str, max_depth: int) -> dict[str, Any]:
    """Convert an attribute map (entity properties or context)."""
    return _record(value, path, max_depth)


def _record(value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
    if depth <= 0:
        raise UnsupportedValue(path, "nested too deeply")
    return {key: _value(item, f"{path}.{key}", depth - 1) for key, item in value.items() if item is not None}


def _value(value: Any, path: str, depth: int) -> Any:
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise UnsupportedValue(path, "integer outside the 64-bit range")
        return value
    if kind is float:
        return _number(value, path)
    if kind is dict:
        return _record(value, path, depth)
    if kind is list:
        if depth <= 0:
            raise UnsupportedValue(path, "nested too deeply")
        if any(item is None for item in value):
            raise UnsupportedValue(path, "null inside an array has no Cedar equivalent")
        return [_value(item, f"{path}[{i}]", depth - 1) for i, item in enumerate(value)]
    raise UnsupportedValue(path, f"unsupported value type {kind.__name__}")


def _number(value: float, path: str) -> Any:
    if value.is_integer() and _LONG_MIN <= value <= _LONG_MAX:
        return int(value)
    text = repr(value)
    whole, _, fraction = text.partition(".")
    if "e" in text or "n" in text or len(fraction) > 4 or abs(value) >= _DECIMAL_LIMIT:
        raise UnsupportedValue(path, "number not representable exactly in Cedar (Long or decimal with ≤4 digits)")
    return {"__extn": {"fn": "decimal", "arg": text}}
