"""Transport rules of the HTTPS/JSON binding that do not depend on an HTTP framework (§8)."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from profiles.authzen.errors import InvalidRequest

T = TypeVar("T")


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header: the part before `;`, trimmed, lower-cased.
    Headers are parsed, never string-compared whole (`application/json; charset=utf-8`)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None) -> None:
    """AZ-41: requests carry `application/json`; parameters such as charset are fine.
    A wrong type is a 400, not a 415 (§8.4 ambiguity note)."""
    if media_type(content_type) != "application/json":
        raise InvalidRequest("Content-Type must be application/json")


def decode_body(body: bytes, type_: type[T]) -> T:
    """Decode a request body into `type_` (AZ-42, AZ-44, AZ-45, §8.2 conformance reading).

    msgspec rejects NaN/Infinity, invalid UTF-8, trailing data and bool-for-int; unknown members
    are ignored because no wire Struct forbids them.
    """
    if not body:
        raise InvalidRequest("request body is empty")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None


def describe_validation_error(exc: msgspec.ValidationError, root: str = "") -> str:
    """Turn msgspec's "Expected `str`, got `int` - at `$.subject.id`" into
    "subject.id: expected str, got int", naming the member the PEP must fix. `root` names
    where the decoded value sits in the request (e.g. "evaluations[2]")."""
    text = str(exc)
    message, _, where = text.partition(" - at `$")
    path = ".".join(part for part in (root, where.rstrip("`").lstrip(".")) if part).replace(".[", "[")
    if message == "Expected `object`, got `array`" and not path:
        return "the request body must be a JSON object"
    message = message.replace("`", "")
    message = message[:1].lower() + message[1:]
    if message.startswith("object missing required field "):
        member = message.removeprefix("object missing required field ")
        return f"{path + '.' if path else ''}{member} is required"
    return f"{path}: {message}" if path else message
