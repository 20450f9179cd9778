"""Unit tests of the pure AuthZEN protocol rules in profiles/authzen (no server, no engine).

Each test is named after the requirement of spec/authzen-api.md it proves (AZ-n).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet

from profiles.authzen.errors import InvalidRequest
from profiles.authzen.evaluation import (
    BatchPlan,
    ItemError,
    execute_batch,
    plan_evaluations,
)
from profiles.authzen.metadata import (
    ENDPOINT_PATHS,
    WELL_KNOWN,
    build_metadata,
    metadata_path,
    sign_metadata,
)
from profiles.authzen.model import (
    Action,
    ActionSearchRequest,
    Decision,
    EvaluationRequest,
    EvaluationsRequest,
    EvaluationsResponse,
    PageRequest,
    Resource,
    ResourceSearchRequest,
    Subject,
    SubjectSearchRequest,
)
from profiles.authzen.search import (
    decode_page_token,
    encode_page_token,
    paginate,
    query_fingerprint,
)
from profiles.authzen.transport import check_media_type, decode_body

SUBJECT = {"type": "user", "id": "alice"}
ACTION = {"name": "read"}
RESOURCE = {"type": "doc", "id": "d1"}
SINGLE = {"subject": SUBJECT, "action": ACTION, "resource": RESOURCE}


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def decode_single(value: Any) -> EvaluationRequest:
    return decode_body(raw(value), EvaluationRequest)


def decode_batch(value: Any) -> EvaluationsRequest:
    return decode_body(raw(value), EvaluationsRequest)


def invalid(call: Any, *args: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    assert caught.value.error == "invalid_request"
    return caught.value


# -- transport: media type (AZ-41) ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", " application/json ;charset=UTF-8"],
)
def test_az_41_json_media_type_accepted_with_parameters_and_any_case(content_type: str) -> None:
    check_media_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/jsonp", "application/problem+json", "application/x-www-form-urlencoded", "json"],
)
def test_az_41_other_media_types_are_400(content_type: str | None) -> None:
    error = invalid(check_media_type, content_type)
    assert "application/json" in error.message


# -- transport: body decoding (AZ-3, AZ-42, AZ-44, AZ-45, AZ-47) ---------------------------


def test_az_3_decodes_entities_as_typed_strings_and_objects() -> None:
    request = decode_single(
        {
            "subject": {"type": "user", "id": "alice", "properties": {"dept": "finance", "tags": ["a", "b"], "n": {"x": 1}}},
            "action": {"name": "read", "properties": {"channel": "sepa"}},
            "resource": {"type": "doc", "id": "d1"},
            "context": {"ip": "198.51.100.7"},
        }
    )
    assert (request.subject.type, request.subject.id) == ("user", "alice")
    assert request.subject.properties == {"dept": "finance", "tags": ["a", "b"], "n": {"x": 1}}
    assert request.action.name == "read" and request.action.properties == {"channel": "sepa"}
    assert (request.resource.type, request.resource.id, request.resource.properties) == ("doc", "d1", None)
    assert request.context == {"ip": "198.51.100.7"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"subject": {"type": "user", "id": 1}, "action": ACTION, "resource": RESOURCE}, "subject.id: expected str, got int"),
        ({"subject": {"type": True, "id": "a"}, "action": ACTION, "resource": RESOURCE}, "subject.type: expected str, got bool"),
        ({"subject": SUBJECT, "action": {"name": None}, "resource": RESOURCE}, "action.name: expected str, got null"),
        ({"subject": "alice", "action": ACTION, "resource": RESOURCE}, "subject: expected object, got str"),
        ({"subject": SUBJECT, "action": ACTION, "resource": {"type": "doc", "id": "d1", "properties": []}}, "resource.properties: expected object | null, got array"),
        ({**SINGLE, "context": "now"}, "context: expected object | null, got str"),
        ({**SINGLE, "context": []}, "context: expected object | null, got array"),
    ],
)
def test_az_3_wrong_json_types_are_400_naming_the_member(body: dict[str, Any], message: str) -> None:
    assert invalid(decode_single, body).message == message


@pytest.mark.parametrize("body", [b"[]", b"[{}]", b'"x"', b"1", b"null", b"true"])
def test_az_42_top_level_must_be_an_object(body: bytes) -> None:
    error = invalid(decode_body, body, EvaluationRequest)
    assert "object" in error.message


def test_az_42_array_body_message() -> None:
    assert invalid(decode_body, raw([SINGLE]), EvaluationRequest).message == "the request body must be a JSON object"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("subject", "subject is required"),
        ("action", "action is required"),
        ("resource", "resource is required"),
        ("subject.id", "subject.id is required"),
        ("subject.type", "subject.type is required"),
        ("resource.id", "resource.id is required"),
        ("resource.type", "resource.type is required"),
        ("action.name", "action.name is required"),
    ],
)
def test_az_44_missing_required_member_is_400_naming_it(missing: str, message: str) -> None:
    body = json.loads(json.dumps(SINGLE))
    entity, _, member = missing.partition(".")
    if member:
        del body[entity][member]
    else:
        del body[entity]
    assert invalid(decode_single, body).message == message


@pytest.mark.parametrize("body", [b"", b"{", b"{}x", b"{'a': 1}", b"\xef\xbb\xbf"])
def test_az_44_empty_or_malformed_body_is_400(body: bytes) -> None:
    invalid(decode_body, body, EvaluationRequest)


def test_az_44_empty_body_message() -> None:
    assert invalid(decode_body, b"", EvaluationRequest).message == "request body is empty"


def test_az_45_unknown_members_ignored_at_every_level() -> None:
    body = {
        "subject": {**SUBJECT, "x-subject": 1, "properties": {"a": 1}},
        "action": {**ACTION, "x-action": [1, 2]},
        "resource": {**RESOURCE, "x-resource": {"deep": True}},
        "context": {"anything": {"goes": None}},
        "x-top": "ignored",
        "options": {"x-option": 1},
    }
    request = decode_single(body)
    assert request == EvaluationRequest(Subject("user", "alice", {"a": 1}), Action("read"), Resource("doc", "d1"), {"anything": {"goes": None}})
    batch = decode_batch({**body, "options": {"evaluations_semantic": "deny_on_first_deny", "x-option": True}, "evaluations": [{"x-item": 1}]})
    assert batch.options is not None and batch.options.evaluations_semantic == "deny_on_first_deny"
    search = decode_body(raw({**body, "resource": {"type": "doc", "x": 1}, "page": {"limit": 1, "x-page": 2}}), ResourceSearchRequest)
    assert search.page == PageRequest(limit=1)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e400"])
def test_az_47_non_ijson_numbers_are_400(literal: bytes) -> None:
    body = b'{"subject":{"type":"user","id":"a","properties":{"n":' + literal + b'}},"action":{"name":"r"},"resource":{"type":"t","id":"1"}}'
    invalid(decode_body, body, EvaluationRequest)


def test_az_47_unpaired_surrogate_is_400() -> None:
    body = b'{"subject":{"type":"user","id":"\\ud800"},"action":{"name":"r"},"resource":{"type":"t","id":"1"}}'
    invalid(decode_body, body, EvaluationRequest)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80"])
def test_az_47_invalid_utf8_is_400_not_a_crash(bad: bytes) -> None:
    """I-JSON is UTF-8 (AZ-47) and a body that is not valid JSON text is a 400 (§8.2). A raw
    invalid byte inside a string must not escape as UnicodeDecodeError (→ HTTP 500)."""
    body = b'{"subject":{"type":"user","id":"' + bad + b'"},"action":{"name":"r"},"resource":{"type":"t","id":"1"}}'
    invalid(decode_body, body, EvaluationRequest)


@pytest.mark.parametrize("limit", [True, False, -1, 1.5, 1.0, "1", [1], {}])
def test_az_44_limit_must_be_a_non_negative_integer_never_a_bool(limit: Any) -> None:
    body = {"subject": SUBJECT, "action": ACTION, "resource": {"type": "doc"}, "page": {"limit": limit}}
    error = invalid(decode_body, raw(body), ResourceSearchRequest)
    assert error.message.startswith("page.limit")


def test_az_20_limit_zero_is_legal() -> None:
    body = {"subject": SUBJECT, "action": ACTION, "resource": {"type": "doc"}, "page": {"limit": 0}}
    assert decode_body(raw(body), ResourceSearchRequest).page == PageRequest(limit=0)


def test_az_55_nesting_too_deep_is_400_with_message() -> None:
    body = b'{"subject":{"type":"u","id":"a"},"action":{"name":"r"},"resource":{"type":"t","id":"1"},"context":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    assert invalid(decode_body, body, EvaluationRequest).message == "request body is nested too deeply"


def test_az_48_null_for_optional_member_is_absent() -> None:
    request = decode_single(
        {
            "subject": {**SUBJECT, "properties": None},
            "action": {**ACTION, "properties": None},
            "resource": {**RESOURCE, "properties": None},
            "context": None,
        }
    )
    assert request == decode_single(SINGLE)
    assert request.context is None
    batch = decode_batch({**SINGLE, "context": None, "evaluations": None, "options": None})
    assert batch.context is None and batch.evaluations is None and batch.options is None


def test_az_48_null_for_required_member_is_400() -> None:
    assert invalid(decode_single, {**SINGLE, "subject": None}).message == "subject: expected object, got null"


def test_az_4_decision_encodes_as_json_boolean() -> None:
    assert msgspec.json.encode(Decision(True)) == b'{"decision":true}'
    assert msgspec.json.encode(Decision(False, {"reason": "x"})) == b'{"decision":false,"context":{"reason":"x"}}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"decision": 1}, Decision)


def test_az_13_batch_response_has_no_top_level_decision() -> None:
    assert msgspec.json.decode(msgspec.json.encode(EvaluationsResponse([Decision(True)]))) == {"evaluations": [{"decision": True}]}


# -- evaluation: batch planning (AZ-8..AZ-11, AZ-55) ---------------------------------------


def plan(body: dict[str, Any], max_items: int = 100) -> EvaluationRequest | BatchPlan:
    return plan_evaluations(decode_batch(body), max_items)


@pytest.mark.parametrize("evaluations", ["absent", "null", "empty"])
def test_az_8_absent_or_empty_evaluations_is_a_single_evaluation(evaluations: str) -> None:
    body: dict[str, Any] = {**SINGLE, "context": {"k": 1}}
    if evaluations == "null":
        body["evaluations"] = None
    elif evaluations == "empty":
        body["evaluations"] = []
    assert plan(body) == decode_single({**SINGLE, "context": {"k": 1}})


@pytest.mark.parametrize("missing", ["subject", "action", "resource"])
@pytest.mark.parametrize("evaluations", [None, []])
def test_az_8_single_form_requires_top_level_entities(missing: str, evaluations: list[Any] | None) -> None:
    body: dict[str, Any] = {k: v for k, v in SINGLE.items() if k != missing}
    if evaluations is not None:
        body["evaluations"] = evaluations
    error = invalid(plan, body)
    assert error.message.startswith(f"{missing} is required")


def test_az_9_empty_item_inherits_all_four_top_level_values() -> None:
    top = {
        "subject": {**SUBJECT, "properties": {"a": 1}},
        "action": {"name": "read", "properties": {"c": 1}},
        "resource": {**RESOURCE, "properties": {"r": 1}},
        "context": {"time": "t"},
    }
    result = plan({**top, "evaluations": [{}]})
    assert isinstance(result, BatchPlan)
    assert result.items == [decode_single(top)]
    assert result.semantic == "execute_all"


def test_az_9_entity_override_is_whole_object_without_deep_merge() -> None:
    top = {
        "subject": {"type": "user", "id": "alice", "properties": {"a": 1, "b": 2}},
        "action": ACTION,
        "resource": {"type": "doc", "id": "d1", "properties": {"owner": "alice"}},
        "context": {"x": 1, "y": 2},
    }
    items = [
        {"subject": {"type": "user", "id": "alice", "properties": {"a": 3}}},
        {"resource": {"type": "doc", "id": "d1"}},
        {"context": {"x": 9}},
        {"context": {}},
        {"action": {"name": "edit"}},
    ]
    result = plan({**top, "evaluations": items})
    assert isinstance(result, BatchPlan)
    first, second, third, fourth, fifth = result.items
    assert isinstance(first, EvaluationRequest) and first.subject.properties == {"a": 3}
    assert first.resource.properties == {"owner": "alice"} and first.context == {"x": 1, "y": 2}
    assert isinstance(second, EvaluationRequest) and second.resource.properties is None
    assert second.subject.properties == {"a": 1, "b": 2}
    assert isinstance(third, EvaluationRequest) and third.context == {"x": 9}
    assert isinstance(fourth, EvaluationRequest) and fourth.context == {}, "item context {} overrides, it is not merged"
    assert isinstance(fifth, EvaluationRequest) and fifth.action.name == "edit" and fifth.context == {"x": 1, "y": 2}


def test_az_9_item_without_context_and_no_top_level_context_has_none() -> None:
    result = plan({"subject": SUBJECT, "action": ACTION, "evaluations": [{"resource": RESOURCE}]})
    assert isinstance(result, BatchPlan)
    assert result.items == [decode_single(SINGLE)]


def test_az_10_top_level_entity_may_be_omitted_when_every_item_has_it() -> None:
    result = plan({"action": ACTION, "evaluations": [{"subject": SUBJECT, "resource": RESOURCE}, {"subject": {"type": "user", "id": "bob"}, "resource": RESOURCE}]})
    assert isinstance(result, BatchPlan)
    assert [item.subject.id for item in result.items if isinstance(item, EvaluationRequest)] == ["alice", "bob"]


def test_az_10_item_missing_an_entity_is_an_item_error_keeping_cardinality() -> None:
    result = plan({"subject": SUBJECT, "action": ACTION, "evaluations": [{"resource": RESOURCE}, {}, {"resource": RESOURCE}]})
    assert isinstance(result, BatchPlan)
    assert len(result.items) == 3
    assert isinstance(result.items[0], EvaluationRequest) and isinstance(result.items[2], EvaluationRequest)
    error = result.items[1]
    assert error == ItemError("evaluations[1]: resource is required (in the item or at top level)")
    assert error.decision() == Decision(False, {"error": {"status": 400, "message": error.message}})


@pytest.mark.parametrize(
    "item",
    [1, "x", None, [], {"subject": "alice"}, {"subject": {"type": "user"}}, {"action": {"name": 3}}, {"context": []}],
)
def test_az_10_malformed_item_is_an_item_error_not_a_400(item: Any) -> None:
    result = plan({**SINGLE, "evaluations": [{}, item, {}]})
    assert isinstance(result, BatchPlan)
    assert [type(i) for i in result.items] == [EvaluationRequest, ItemError, EvaluationRequest]
    assert result.items[1].message.startswith("evaluations[1]")  # type: ignore[union-attr]


@pytest.mark.parametrize("evaluations", [{}, "x", 1, True])
def test_az_44_evaluations_not_an_array_is_400(evaluations: Any) -> None:
    assert invalid(decode_batch, {**SINGLE, "evaluations": evaluations}).message.startswith("evaluations:")


@pytest.mark.parametrize("options", [[], "execute_all", 1])
def test_az_11_options_not_an_object_is_400(options: Any) -> None:
    assert invalid(decode_batch, {**SINGLE, "options": options, "evaluations": [{}]}).message.startswith("options:")


@pytest.mark.parametrize("semantic", ["bogus", "EXECUTE_ALL", "", 1, True])
def test_az_11_unknown_semantic_is_400(semantic: Any) -> None:
    body = {**SINGLE, "options": {"evaluations_semantic": semantic}, "evaluations": [{}]}
    assert invalid(decode_batch, body).message.startswith("options.evaluations_semantic")


@pytest.mark.parametrize("semantic", ["execute_all", "deny_on_first_deny", "permit_on_first_permit"])
def test_az_11_each_defined_semantic_is_accepted(semantic: str) -> None:
    result = plan({**SINGLE, "options": {"evaluations_semantic": semantic, "other": 1}, "evaluations": [{}]})
    assert isinstance(result, BatchPlan) and result.semantic == semantic


@pytest.mark.parametrize("options", ["absent", {}, {"unknown": "x"}])
def test_az_11_default_semantic_is_execute_all(options: Any) -> None:
    body: dict[str, Any] = {**SINGLE, "evaluations": [{}]}
    if options != "absent":
        body["options"] = options
    result = plan(body)
    assert isinstance(result, BatchPlan) and result.semantic == "execute_all"


def test_az_55_batch_size_is_bounded() -> None:
    assert isinstance(plan({**SINGLE, "evaluations": [{}] * 3}, max_items=3), BatchPlan)
    assert invalid(plan, {**SINGLE, "evaluations": [{}] * 4}, 3).message == "evaluations: at most 3 items per request"


# -- evaluation: execution (AZ-11, AZ-12, AZ-14) -------------------------------------------


class Recorder:
    """An evaluate callback deciding by resource id ("p…" permits, anything else denies) that
    records every item it is asked about and every call."""

    def __init__(self, always: bool | None = None) -> None:
        self.calls: list[list[str]] = []
        self.always = always

    def __call__(self, items: Sequence[EvaluationRequest]) -> list[Decision]:
        self.calls.append([item.resource.id for item in items])
        if self.always is not None:
            return [Decision(self.always) for _ in items]
        return [Decision(item.resource.id.startswith("p"), {"id": item.resource.id}) for item in items]

    @property
    def evaluated(self) -> list[str]:
        return [rid for call in self.calls for rid in call]


def batch(ids: list[str | None], semantic: str | None = None) -> BatchPlan:
    """A plan whose items are resources with these ids (None: an item missing its resource)."""
    body: dict[str, Any] = {"subject": SUBJECT, "action": ACTION}
    body["evaluations"] = [{"resource": {"type": "doc", "id": rid}} if rid is not None else {} for rid in ids]
    if semantic:
        body["options"] = {"evaluations_semantic": semantic}
    result = plan(body)
    assert isinstance(result, BatchPlan)
    return result


def decisions(result: list[Decision]) -> list[bool]:
    return [d.decision for d in result]


def test_az_12_execute_all_keeps_cardinality_and_order() -> None:
    recorder = Recorder()
    result = execute_batch(batch(["p1", "d2", "p3", "d4", "p5"]), recorder)
    assert decisions(result) == [True, False, True, False, True]
    assert [d.context["id"] for d in result] == ["p1", "d2", "p3", "d4", "p5"]  # type: ignore[index]
    assert recorder.evaluated == ["p1", "d2", "p3", "d4", "p5"]


def test_az_14_execute_all_item_error_is_false_in_place_and_never_evaluated() -> None:
    recorder = Recorder(always=True)
    result = execute_batch(batch(["p1", None, "p3"]), recorder)
    assert decisions(result) == [True, False, True]
    assert result[1].context == {"error": {"status": 400, "message": "evaluations[1]: resource is required (in the item or at top level)"}}
    assert recorder.evaluated == ["p1", "p3"]


def test_az_14_item_errors_are_never_true_even_if_everything_else_permits() -> None:
    for semantic in ("execute_all", "deny_on_first_deny", "permit_on_first_permit"):
        result = execute_batch(batch([None, None], semantic), Recorder(always=True))
        assert all(d.decision is False for d in result), semantic
        assert all("error" in (d.context or {}) for d in result), semantic


def test_az_11_deny_on_first_deny_includes_the_deny_and_stops_evaluating() -> None:
    recorder = Recorder()
    result = execute_batch(batch(["p1", "p2", "d3", "p4", "d5"], "deny_on_first_deny"), recorder)
    assert decisions(result) == [True, True, False]
    assert result[-1].context == {"id": "d3"}
    assert recorder.evaluated == ["p1", "p2", "d3"], "items after the first deny must not be evaluated"


def test_az_11_deny_on_first_deny_item_error_counts_as_the_first_deny() -> None:
    recorder = Recorder()
    result = execute_batch(batch(["p1", None, "p3"], "deny_on_first_deny"), recorder)
    assert decisions(result) == [True, False]
    assert "error" in (result[1].context or {})
    assert recorder.evaluated == ["p1"]


def test_az_11_deny_on_first_deny_without_a_deny_returns_all() -> None:
    recorder = Recorder()
    assert decisions(execute_batch(batch(["p1", "p2", "p3"], "deny_on_first_deny"), recorder)) == [True, True, True]
    assert recorder.evaluated == ["p1", "p2", "p3"]


def test_az_11_deny_on_first_deny_first_item_denies() -> None:
    recorder = Recorder()
    assert decisions(execute_batch(batch(["d1", "p2"], "deny_on_first_deny"), recorder)) == [False]
    assert recorder.evaluated == ["d1"]


def test_az_11_permit_on_first_permit_includes_the_permit_and_stops_evaluating() -> None:
    recorder = Recorder()
    result = execute_batch(batch(["d1", None, "p3", "d4", "p5"], "permit_on_first_permit"), recorder)
    assert decisions(result) == [False, False, True]
    assert result[-1].context == {"id": "p3"}
    assert recorder.evaluated == ["d1", "p3"], "items after the first permit must not be evaluated"


def test_az_11_permit_on_first_permit_without_a_permit_returns_all_false() -> None:
    recorder = Recorder()
    result = execute_batch(batch(["d1", None, "d3"], "permit_on_first_permit"), recorder)
    assert decisions(result) == [False, False, False]
    assert recorder.evaluated == ["d1", "d3"]


def test_az_11_short_circuit_evaluates_one_item_per_call() -> None:
    recorder = Recorder()
    execute_batch(batch(["p1", "p2", "d3"], "deny_on_first_deny"), recorder)
    assert recorder.calls == [["p1"], ["p2"], ["d3"]]


# -- search: tokens and pagination (AZ-20..AZ-25, AZ-55) -----------------------------------

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
MATCHES = ["a", "b", "c", "d", "e"]


def resource_search(**changes: Any) -> ResourceSearchRequest:
    body: dict[str, Any] = {"subject": SUBJECT, "action": ACTION, "resource": {"type": "doc"}, "context": {"c": 1}}
    body.update(changes)
    return decode_body(raw(body), ResourceSearchRequest)


FP = query_fingerprint("resource", resource_search())


def page(token: str | None = None, limit: int | None = None) -> PageRequest:
    return PageRequest(token=token, limit=limit)


def cut(page_request: PageRequest | None, matches: list[str] = MATCHES, *, fingerprint: bytes = FP, key: bytes = KEY, max_limit: int = 100) -> tuple[list[str], Any]:
    return paginate(matches, page_request, key=key, fingerprint=fingerprint, max_limit=max_limit)


def test_az_24_complete_answer_has_empty_next_token() -> None:
    results, info = cut(None)
    assert results == MATCHES
    assert (info.next_token, info.count, info.total) == ("", 5, 5)


def test_az_21_partial_answer_has_non_empty_next_token_and_walks_to_empty() -> None:
    results, info = cut(page(limit=2))
    assert results == ["a", "b"] and info.next_token and (info.count, info.total) == (2, 5)
    seen = list(results)
    token = info.next_token
    pages = 1
    while token:
        results, info = cut(page(token=token, limit=2))
        assert isinstance(info.next_token, str)
        assert info.count == len(results) and info.total == 5
        seen += results
        token = info.next_token
        pages += 1
    assert seen == MATCHES and pages == 3


def test_az_21_last_page_exactly_full_has_empty_token() -> None:
    _, info = cut(page(limit=5))
    assert info.next_token == ""
    results, info = cut(page(limit=4))
    results, info = cut(page(token=info.next_token, limit=4))
    assert results == ["e"] and info.next_token == ""


def test_az_22_continuation_without_limit_keeps_the_tokens_limit() -> None:
    _, info = cut(page(limit=2))
    results, info = cut(page(token=info.next_token))
    assert results == ["c", "d"] and info.next_token


def test_az_23_continuation_with_a_changed_limit_is_400() -> None:
    _, info = cut(page(limit=2))
    assert "limit" in invalid(cut, page(token=info.next_token, limit=3)).message


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": {"type": "user", "id": "bob"}},
        {"action": {"name": "write"}},
        {"resource": {"type": "folder"}},
        {"resource": {"type": "doc", "properties": {"p": 1}}},
        {"context": {"c": 2}},
        {"context": None},
    ],
)
def test_az_23_continuation_with_a_changed_entity_is_400(changes: dict[str, Any]) -> None:
    _, info = cut(page(limit=2))
    changed = query_fingerprint("resource", resource_search(**changes))
    assert changed != FP
    invalid(cut, page(token=info.next_token, limit=2), fingerprint=changed)


def test_az_18_searched_id_is_not_part_of_the_query() -> None:
    assert query_fingerprint("resource", resource_search(resource={"type": "doc", "id": "d9"})) == FP
    subject_search = {"subject": {"type": "user"}, "action": ACTION, "resource": RESOURCE}
    without = decode_body(raw(subject_search), SubjectSearchRequest)
    with_id = decode_body(raw({**subject_search, "subject": {"type": "user", "id": "zed"}}), SubjectSearchRequest)
    assert query_fingerprint("subject", without) == query_fingerprint("subject", with_id)


def test_az_23_each_search_kind_has_its_own_fingerprint() -> None:
    action_search = decode_body(raw({"subject": SUBJECT, "resource": RESOURCE}), ActionSearchRequest)
    subject_search = decode_body(raw({"subject": {"type": "user"}, "action": ACTION, "resource": RESOURCE}), SubjectSearchRequest)
    fingerprints = {FP, query_fingerprint("action", action_search), query_fingerprint("subject", subject_search)}
    assert len(fingerprints) == 3


def test_az_23_page_members_are_not_part_of_the_query() -> None:
    assert query_fingerprint("resource", resource_search(page={"limit": 7, "token": "x"})) == FP


@pytest.mark.parametrize("token", ["forged", "AAAA", "!!!!", "AQAAAAIAAAAC", "A" * 200, "AQAAAAIAAAACqOPJgW1MYmlXk7MojXg6bw=="])
def test_az_23_forged_token_is_400(token: str) -> None:
    invalid(cut, page(token=token))


def test_az_23_tampered_token_is_400() -> None:
    _, info = cut(page(limit=1))
    raw_token = bytearray(base64.urlsafe_b64decode(info.next_token + "=" * (-len(info.next_token) % 4)))
    raw_token[4] ^= 0x01  # the offset
    tampered = base64.urlsafe_b64encode(bytes(raw_token)).rstrip(b"=").decode()
    assert tampered != info.next_token
    invalid(cut, page(token=tampered, limit=1))


def test_az_23_token_from_another_key_is_400() -> None:
    _, info = cut(page(limit=1), key=OTHER_KEY)
    invalid(cut, page(token=info.next_token, limit=1))


def test_token_round_trip() -> None:
    token = encode_page_token(KEY, FP, 3, 2)
    assert decode_page_token(KEY, FP, token) == (3, 2)
    assert "=" not in token


def test_az_20_limit_zero_returns_nothing_and_signals_matches() -> None:
    results, info = cut(page(limit=0))
    assert results == [] and info.next_token != "" and (info.count, info.total) == (0, 5)
    results, info = cut(page(limit=0), [])
    assert results == [] and info.next_token == "" and (info.count, info.total) == (0, 0)


def test_az_55_limit_is_capped_at_the_maximum() -> None:
    results, info = cut(page(limit=1000), max_limit=2)
    assert results == ["a", "b"] and info.next_token
    results, info = cut(page(token=info.next_token, limit=1000), max_limit=2)
    assert results == ["c", "d"], "a continuation repeating the over-large limit is the same request"


def test_az_55_absent_limit_means_the_maximum() -> None:
    results, info = cut(None, max_limit=3)
    assert results == ["a", "b", "c"] and info.next_token and info.total == 5


def test_az_24_no_matches_is_a_complete_empty_page() -> None:
    results, info = cut(page(limit=3), [])
    assert results == [] and (info.next_token, info.count, info.total) == ("", 0, 0)


# -- metadata (AZ-29, AZ-31, AZ-35, AZ-36) -------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "path"),
    [
        ("https://pdp.example.net", WELL_KNOWN),
        ("https://pdp.example.net/", WELL_KNOWN),
        ("https://pdp.example.net:8443", WELL_KNOWN),
        ("https://pdp.example.net/tenant-a", WELL_KNOWN + "/tenant-a"),
        ("https://pdp.example.net/tenant-a/", WELL_KNOWN + "/tenant-a"),
        ("https://pdp.example.net:8443/a/b", WELL_KNOWN + "/a/b"),
    ],
)
def test_az_31_well_known_is_inserted_between_host_and_path(identifier: str, path: str) -> None:
    assert WELL_KNOWN == "/.well-known/authzen-configuration"
    assert metadata_path(identifier) == path


def test_az_29_metadata_has_no_null_or_empty_members() -> None:
    document = msgspec.json.decode(msgspec.json.encode(build_metadata("https://pdp.example.net/tenant-a/", capabilities=[])))
    assert document == {
        "policy_decision_point": "https://pdp.example.net/tenant-a",
        **{member: "https://pdp.example.net/tenant-a" + path for member, path in ENDPOINT_PATHS.items()},
    }
    assert all(value not in (None, [], "") for value in document.values())


def test_az_29_multi_valued_members_are_arrays() -> None:
    document = msgspec.to_builtins(build_metadata("https://pdp.example.net", capabilities=["urn:x"], jwks_uri="https://pdp.example.net/jwks"))
    assert document["capabilities"] == ["urn:x"]
    assert document["jwks_uri"] == "https://pdp.example.net/jwks"


@pytest.fixture(scope="module")
def signing_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "unit-kid"}, private=True)


def test_az_35_signed_metadata_verifies_and_asserts_the_members(signing_key: ECKey) -> None:
    metadata = build_metadata("https://pdp.example.net/tenant-a", jwks_uri="https://pdp.example.net/tenant-a/.well-known/jwks.json")
    signed = sign_metadata(metadata, signing_key, ttl_seconds=300, now=1_800_000_000)
    assert msgspec.structs.replace(signed, signed_metadata=None) == metadata, "plain members unchanged"
    assert signed.signed_metadata
    public = KeySet.import_key_set({"keys": [signing_key.as_dict(private=False)]})
    token = jwt.decode(signed.signed_metadata, public)
    assert token.header["alg"] == "ES256" and token.header["kid"] == "unit-kid"
    claims = dict(token.claims)
    assert claims.pop("iss") == "https://pdp.example.net/tenant-a"
    assert (claims.pop("iat"), claims.pop("exp")) == (1_800_000_000, 1_800_000_300)
    assert claims == msgspec.to_builtins(metadata)


def test_az_35_signature_fails_with_another_key(signing_key: ECKey) -> None:
    signed = sign_metadata(build_metadata("https://pdp.example.net"), signing_key, ttl_seconds=60)
    other = ECKey.generate_key("P-256", private=True)
    with pytest.raises(BadSignatureError):
        jwt.decode(signed.signed_metadata, ECKey.import_key(other.as_dict(private=False)))  # type: ignore[arg-type]


def test_az_36_signed_metadata_has_no_signed_metadata_claim(signing_key: ECKey) -> None:
    once = sign_metadata(build_metadata("https://pdp.example.net"), signing_key, ttl_seconds=60)
    twice = sign_metadata(once, signing_key, ttl_seconds=60)
    for signed in (once, twice):
        claims = jwt.decode(signed.signed_metadata, signing_key).claims  # type: ignore[arg-type]
        assert "signed_metadata" not in claims
        assert claims["iss"] == "https://pdp.example.net"
