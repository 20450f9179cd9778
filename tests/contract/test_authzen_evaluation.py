"""Access Evaluation and Access Evaluations (batch) over real HTTP (authzen-api.md §2, §4, §5).

The out-of-the-box `server` (Todo bundle) and `bundle_server` (the contract bundle of
conftest.py) answer; every test asserts exact decisions so it can fail.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract.helpers import (
    BETH,
    EVALUATION,
    EVALUATIONS,
    MORTY,
    MORTYS_TODO,
    RICK,
    RICKS_TODO,
    TODOS,
    action,
    allowed,
    assert_authzen_error,
    batch,
    decide,
    request,
    resource,
    subject,
)

# -- AZ-4, AZ-7: a boolean decision; a deny is a 200 ---------------------------------------


def test_az_4_decision_is_a_json_boolean(client: httpx.Client) -> None:
    permit = client.post(EVALUATION, json=request(MORTY, "can_delete_todo", MORTYS_TODO))
    deny = client.post(EVALUATION, json=request(MORTY, "can_delete_todo", RICKS_TODO))
    assert permit.status_code == deny.status_code == 200
    assert permit.content == b'{"decision":true}'
    assert deny.content.startswith(b'{"decision":false')
    assert deny.json()["decision"] is False


def test_az_7_deny_is_http_200(client: httpx.Client) -> None:
    response = client.post(EVALUATION, json=request(BETH, "can_create_todo", "any"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"decision": False, "context": {"reason": "no_matching_permit"}}


def test_az_7_deny_for_unknown_subject_is_http_200(client: httpx.Client) -> None:
    assert decide(client, request("nobody@example.com", "can_read_todos", TODOS[0]))["decision"] is False


@pytest.mark.parametrize(
    ("who", "what", "which", "expected"),
    [
        (RICK, "can_delete_todo", TODOS[4], True),  # admin deletes any todo
        (RICK, "can_update_todo", TODOS[3], True),  # evil genius updates any todo
        (MORTY, "can_update_todo", MORTYS_TODO, True),  # editor updates own
        (MORTY, "can_update_todo", RICKS_TODO, False),
        (BETH, "can_read_todos", RICKS_TODO, True),  # viewer reads
        (BETH, "can_delete_todo", TODOS[3], False),
        (BETH, "can_read_user", RICK, True),
    ],
)
def test_az_4_decisions_follow_the_policy(client: httpx.Client, who: str, what: str, which: str, expected: bool) -> None:
    body = request(who, what, which, resource_type="user" if what == "can_read_user" else "todo")
    assert allowed(client, body) is expected


def test_az_7_identical_requests_decide_identically(client: httpx.Client) -> None:
    body = request(MORTY, "can_update_todo", MORTYS_TODO)
    assert [allowed(client, body) for _ in range(5)] == [True] * 5


def test_az_45_irrelevant_context_does_not_change_the_decision(client: httpx.Client) -> None:
    body = request(MORTY, "can_update_todo", MORTYS_TODO, context={"time": "2026-03-02T09:30:00Z", "ip": "198.51.100.7", "nested": {"a": [1, 2]}})
    assert allowed(client, body) is True


# -- decision context: why a deny -----------------------------------------------------------


def test_deny_context_says_why(client: httpx.Client) -> None:
    assert decide(client, request(BETH, "can_delete_todo", TODOS[0])) == {"decision": False, "context": {"reason": "no_matching_permit"}}


def test_deny_by_forbid_names_reason_and_policies(bundle_client: httpx.Client) -> None:
    body = {"subject": subject("alice", "User"), "action": action("read"), "resource": resource("d1", "Doc"), "context": {"level": 5}}
    assert decide(bundle_client, body) == {"decision": False, "context": {"reason": "forbidden", "policies": ["forbid-high-level"]}}


def test_permit_has_no_context_noise(bundle_client: httpx.Client) -> None:
    body = {"subject": subject("alice", "User"), "action": action("read"), "resource": resource("d1", "Doc"), "context": {"level": 1}}
    assert decide(bundle_client, body) == {"decision": True}


def test_forbid_whose_condition_errors_denies(bundle_client: httpx.Client) -> None:
    """Product decision (engine.py docstring): Cedar skips an erroring policy, which for a forbid
    would turn an error into an allow; the PDP denies instead, naming the forbid."""
    body = {"subject": subject("alice", "User"), "action": action("read"), "resource": resource("d1", "Doc"), "context": {"level": "x"}}
    assert decide(bundle_client, body) == {"decision": False, "context": {"reason": "forbid_policy_error", "policies": ["forbid-high-level"]}}
    body["context"] = {}
    assert decide(bundle_client, body) == {"decision": True}, "the permit alone allows"


# -- values Cedar can and cannot represent --------------------------------------------------


@pytest.mark.parametrize("where", ["resource", "subject", "context", "action"])
def test_unrepresentable_value_denies_with_error_never_true(client: httpx.Client, where: str) -> None:
    body = request(RICK, "can_delete_todo", TODOS[0])  # otherwise a permit
    value = {"x": 0.123456}
    if where == "context":
        body["context"] = value
    else:
        body[where]["properties"] = value
    document = decide(client, body)
    assert document["decision"] is False
    assert document["context"]["reason"] == "unsupported_value"
    assert document["context"]["error"]["status"] == 400
    assert "x" in document["context"]["error"]["message"]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e300, 0.1 + 0.2, [1, None]])
def test_other_unrepresentable_values_deny(client: httpx.Client, value: Any) -> None:
    body = request(RICK, "can_delete_todo", TODOS[0], resource_properties={"x": value})
    document = decide(client, body)
    assert document["decision"] is False and document["context"]["reason"] == "unsupported_value"


@pytest.mark.parametrize("value", [2.5, 3.0, -0.25, 2**63 - 1, 1e15, [1, "a", True], {"nested": {"deep": "x"}}, ""])
def test_representable_values_work(client: httpx.Client, value: Any) -> None:
    body = request(RICK, "can_delete_todo", TODOS[0], resource_properties={"x": value}, context={"x": value})
    assert decide(client, body) == {"decision": True}


@pytest.mark.parametrize(("amount", "expected"), [(2.5, True), (2.4999, True), (-1.5, True), (2.5001, False), (7.25, False)])
def test_fractional_numbers_are_cedar_decimals(bundle_client: httpx.Client, amount: float, expected: bool) -> None:
    body = {"subject": subject("alice", "User"), "action": action("spend"), "resource": resource("d1", "Doc"), "context": {"amount": amount}}
    assert allowed(bundle_client, body) is expected


@pytest.mark.parametrize(("n", "expected"), [(3, True), (3.0, True), (4.0, False)])
def test_integral_numbers_are_cedar_longs(bundle_client: httpx.Client, n: float, expected: bool) -> None:
    body = {"subject": subject("alice", "User"), "action": action("count"), "resource": resource("d1", "Doc"), "context": {"n": n}}
    assert allowed(bundle_client, body) is expected


def test_az_48_null_properties_are_absent(client: httpx.Client) -> None:
    body = request(MORTY, "can_update_todo", "new-todo", resource_properties={"ownerID": None})
    assert allowed(client, body) is False, "null is no owner at all"
    body = request(MORTY, "can_update_todo", "new-todo", resource_properties={"ownerID": "morty@the-citadel.com"})
    assert allowed(client, body) is True
    body = request(MORTY, "can_update_todo", MORTYS_TODO, resource_properties={"ownerID": None})
    assert allowed(client, body) is True, "null does not erase the stored owner"


def test_request_properties_override_stored_attributes(client: httpx.Client) -> None:
    body = request(MORTY, "can_update_todo", MORTYS_TODO, resource_properties={"ownerID": "rick@the-citadel.com"})
    assert allowed(client, body) is False
    body = request(MORTY, "can_update_todo", RICKS_TODO, resource_properties={"ownerID": "morty@the-citadel.com"})
    assert allowed(client, body) is True


# -- action.properties and the reserved context names --------------------------------------


def pay(channel_property: str | None = None, channel_context: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": subject("alice", "User"), "action": action("pay"), "resource": resource("d1", "Doc")}
    if channel_property is not None:
        body["action"]["properties"] = {"channel": channel_property}
    if channel_context is not None:
        body["context"] = {"action_properties": {"channel": channel_context}}
    return body


def test_action_properties_are_visible_to_policies(bundle_client: httpx.Client) -> None:
    assert allowed(bundle_client, pay("sepa")) is True
    assert allowed(bundle_client, pay("swift")) is False
    assert allowed(bundle_client, pay()) is False


def test_pep_sent_context_action_properties_is_stripped(bundle_client: httpx.Client) -> None:
    assert allowed(bundle_client, pay(channel_context="sepa")) is False
    assert allowed(bundle_client, pay("swift", channel_context="sepa")) is False
    assert allowed(bundle_client, pay("sepa", channel_context="swift")) is True


def test_pep_sent_context_client_evidence_is_stripped(bundle_client: httpx.Client) -> None:
    body = {"subject": subject("alice", "User"), "action": action("trade"), "resource": resource("d1", "Doc"), "context": {"client_evidence": {"type": "mandate"}}}
    assert allowed(bundle_client, body) is False


# -- AZ-8: the batch endpoint without evaluations ------------------------------------------


@pytest.mark.parametrize("evaluations", ["absent", [], None])
def test_az_8_batch_without_evaluations_answers_a_single_decision(client: httpx.Client, evaluations: Any) -> None:
    for body, expected in ((request(MORTY, "can_delete_todo", MORTYS_TODO), True), (request(MORTY, "can_delete_todo", RICKS_TODO), False)):
        if evaluations != "absent":
            body["evaluations"] = evaluations
        response = client.post(EVALUATIONS, json=body)
        assert response.status_code == 200, response.text
        document = response.json()
        assert "evaluations" not in document
        assert document["decision"] is expected


@pytest.mark.parametrize("missing", ["subject", "action", "resource"])
@pytest.mark.parametrize("evaluations", ["absent", []])
def test_az_8_batch_without_evaluations_400_when_entity_missing(client: httpx.Client, missing: str, evaluations: Any) -> None:
    body = request(MORTY, "can_delete_todo", MORTYS_TODO)
    del body[missing]
    if evaluations != "absent":
        body["evaluations"] = evaluations
    error = assert_authzen_error(client.post(EVALUATIONS, json=body), 400)
    assert missing in error["message"]


# -- AZ-9: default-value merging -----------------------------------------------------------


def test_az_9_empty_item_inherits_everything(client: httpx.Client) -> None:
    top = request(MORTY, "can_update_todo", "new-todo", resource_properties={"ownerID": "morty@the-citadel.com"})
    assert [d["decision"] for d in batch(client, {**top, "evaluations": [{}, {}]})] == [True, True]


def test_az_9_item_entity_replaces_the_default_whole(client: httpx.Client) -> None:
    top = request(MORTY, "can_update_todo", "new-todo", resource_properties={"ownerID": "morty@the-citadel.com"})
    items = [
        {},
        {"resource": {"type": "todo", "id": "new-todo"}},  # no properties: the owner is not inherited
        {"action": {"name": "can_delete_todo"}},
        {"subject": {"type": "user", "id": BETH}},
        {"resource": {"type": "todo", "id": "new-todo", "properties": {"other": 1}}},  # no deep merge
    ]
    assert [d["decision"] for d in batch(client, {**top, "evaluations": items})] == [True, False, True, False, False]


def test_az_9_item_context_replaces_top_level_context(bundle_client: httpx.Client) -> None:
    top = {"subject": subject("alice", "User"), "action": action("both"), "resource": resource("d1", "Doc"), "context": {"a": 1, "b": 2}}
    items: list[dict[str, Any]] = [{}, {"context": {"a": 1}}, {"context": {}}, {"context": {"a": 5, "b": 6}}, {"context": {"b": 1}}]
    assert [d["decision"] for d in batch(bundle_client, {**top, "evaluations": items})] == [True, False, False, True, False]


def test_az_9_spec_example_shared_subject_and_overridden_action(client: httpx.Client) -> None:
    body = {
        "subject": subject(MORTY),
        "context": {"time": "2026-03-02T09:30:00Z"},
        "action": action("can_read_todos"),
        "evaluations": [
            {"resource": resource(TODOS[0])},
            {"resource": resource(TODOS[1])},
            {"action": action("can_delete_todo"), "resource": resource(TODOS[2])},
        ],
    }
    assert [d["decision"] for d in batch(client, body)] == [True, True, False]


def test_az_9_same_resource_id_with_different_properties_is_decided_on_its_own(client: httpx.Client) -> None:
    morty_owns = {"type": "todo", "id": "shared-id", "properties": {"ownerID": "morty@the-citadel.com"}}
    rick_owns = {"type": "todo", "id": "shared-id", "properties": {"ownerID": "rick@the-citadel.com"}}
    top = {"subject": subject(MORTY), "action": action("can_update_todo")}
    items = [{"resource": morty_owns}, {"resource": rick_owns}, {"resource": morty_owns}, {"resource": {"type": "todo", "id": "shared-id"}}]
    assert [d["decision"] for d in batch(client, {**top, "evaluations": items})] == [True, False, True, False]
    stored = [
        {"resource": {"type": "todo", "id": MORTYS_TODO, "properties": {"ownerID": "rick@the-citadel.com"}}},
        {"resource": {"type": "todo", "id": MORTYS_TODO}},
        {"resource": {"type": "todo", "id": RICKS_TODO}},
        {"resource": {"type": "todo", "id": RICKS_TODO, "properties": {"ownerID": "morty@the-citadel.com"}}},
    ]
    assert [d["decision"] for d in batch(client, {**top, "evaluations": stored})] == [False, True, False, True]


@pytest.mark.parametrize("order", ["with-properties-first", "without-properties-first"])
def test_az_9_item_never_sees_another_items_properties(client: httpx.Client, order: str) -> None:
    """Items are independent evaluations: the owner one item asserts for an unstored todo must
    not leak into another item that names the same todo without properties."""
    with_owner = {"resource": {"type": "todo", "id": "leak-check", "properties": {"ownerID": "morty@the-citadel.com"}}}
    without = {"resource": {"type": "todo", "id": "leak-check"}}
    items, expected = ([with_owner, without], [True, False]) if order == "with-properties-first" else ([without, with_owner], [False, True])
    body = {"subject": subject(MORTY), "action": action("can_update_todo"), "evaluations": items}
    assert [d["decision"] for d in batch(client, body)] == expected


def test_az_9_same_subject_id_with_different_properties(client: httpx.Client) -> None:
    top = {"action": action("can_update_todo"), "resource": resource(MORTYS_TODO)}
    items = [
        {"subject": subject(MORTY)},
        {"subject": subject(MORTY, email="other@example.com")},
        {"subject": subject(MORTY, email="morty@the-citadel.com")},
    ]
    assert [d["decision"] for d in batch(client, {**top, "evaluations": items})] == [True, False, True]


# -- AZ-10: entities missing from an item ---------------------------------------------------


def test_az_10_top_level_entities_may_be_omitted_when_items_supply_them(client: httpx.Client) -> None:
    body = {"evaluations": [request(MORTY, "can_delete_todo", MORTYS_TODO), request(BETH, "can_delete_todo", MORTYS_TODO)]}
    assert [d["decision"] for d in batch(client, body)] == [True, False]


def test_az_10_item_missing_an_entity_is_an_item_error_keeping_cardinality(client: httpx.Client) -> None:
    body = {
        "subject": subject(RICK),
        "action": action("can_delete_todo"),
        "evaluations": [{"resource": resource(TODOS[0])}, {}, {"resource": resource(TODOS[1])}],
    }
    result = batch(client, body)
    assert [d["decision"] for d in result] == [True, False, True]
    assert result[1]["context"]["error"]["status"] == 400
    assert "resource" in result[1]["context"]["error"]["message"]


@pytest.mark.parametrize(
    "item",
    [
        "not an object",
        7,
        {"subject": "rick"},
        {"subject": {"type": "user"}},
        {"resource": {"type": "todo", "id": 5}},
        {"action": {}},
        {"context": []},
        {"resource": {"type": "to do", "id": "x"}},
    ],
)
def test_az_10_malformed_item_is_an_item_error_not_a_400(client: httpx.Client, item: Any) -> None:
    top = request(RICK, "can_delete_todo", TODOS[0])
    result = batch(client, {**top, "evaluations": [{}, item, {}]})
    assert [d["decision"] for d in result] == [True, False, True]
    assert "error" in result[1]["context"]


# -- AZ-11, AZ-12, AZ-13, AZ-14: semantics, order and item errors --------------------------

PERMIT = {"resource": resource(MORTYS_TODO)}  # morty may update his own todo
DENY = {"resource": resource(RICKS_TODO)}  # but not rick's
BROKEN: dict[str, Any] = {"resource": {"type": "todo"}}  # an item error


def semantic_batch(items: list[dict[str, Any]], semantic: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": subject(MORTY), "action": action("can_update_todo"), "evaluations": items}
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    return body


@pytest.mark.parametrize("semantic", [None, "execute_all"])
def test_az_12_execute_all_same_length_same_order(client: httpx.Client, semantic: str | None) -> None:
    items = [PERMIT, DENY, PERMIT, DENY, DENY, PERMIT]
    assert [d["decision"] for d in batch(client, semantic_batch(items, semantic))] == [True, False, True, False, False, True]


def test_az_12_large_batch_keeps_order(client: httpx.Client) -> None:
    items = [PERMIT if i % 3 == 0 else DENY for i in range(60)]
    assert [d["decision"] for d in batch(client, semantic_batch(items, None))] == [i % 3 == 0 for i in range(60)]


def test_az_11_deny_on_first_deny_includes_the_deny_and_stops(client: httpx.Client) -> None:
    result = batch(client, semantic_batch([PERMIT, PERMIT, DENY, PERMIT, DENY], "deny_on_first_deny"))
    assert [d["decision"] for d in result] == [True, True, False]


def test_az_11_deny_on_first_deny_item_error_counts_as_deny(client: httpx.Client) -> None:
    result = batch(client, semantic_batch([PERMIT, BROKEN, PERMIT], "deny_on_first_deny"))
    assert [d["decision"] for d in result] == [True, False]
    assert "error" in result[1]["context"]


def test_az_11_deny_on_first_deny_without_deny_returns_all(client: httpx.Client) -> None:
    assert [d["decision"] for d in batch(client, semantic_batch([PERMIT, PERMIT, PERMIT], "deny_on_first_deny"))] == [True, True, True]


def test_az_11_permit_on_first_permit_includes_the_permit_and_stops(client: httpx.Client) -> None:
    result = batch(client, semantic_batch([DENY, BROKEN, PERMIT, DENY, PERMIT], "permit_on_first_permit"))
    assert [d["decision"] for d in result] == [False, False, True]


def test_az_11_permit_on_first_permit_without_permit_returns_all(client: httpx.Client) -> None:
    assert [d["decision"] for d in batch(client, semantic_batch([DENY, BROKEN, DENY], "permit_on_first_permit"))] == [False, False, False]


@pytest.mark.parametrize("semantic", ["bogus", "Execute_All", "", 1])
def test_az_11_unknown_semantic_is_400(client: httpx.Client, semantic: Any) -> None:
    body = semantic_batch([PERMIT], None)
    body["options"] = {"evaluations_semantic": semantic}
    assert "evaluations_semantic" in assert_authzen_error(client.post(EVALUATIONS, json=body), 400)["message"]


@pytest.mark.parametrize("options", [[], "execute_all", 3])
def test_az_11_options_not_an_object_is_400(client: httpx.Client, options: Any) -> None:
    body = semantic_batch([PERMIT], None)
    body["options"] = options
    assert_authzen_error(client.post(EVALUATIONS, json=body), 400)


@pytest.mark.parametrize("evaluations", [{}, "x", 1])
def test_az_44_evaluations_not_an_array_is_400(client: httpx.Client, evaluations: Any) -> None:
    body = {**request(MORTY, "can_update_todo", MORTYS_TODO), "evaluations": evaluations}
    assert_authzen_error(client.post(EVALUATIONS, json=body), 400)


def test_az_45_unknown_option_keys_are_ignored(client: httpx.Client) -> None:
    body = semantic_batch([PERMIT, DENY, PERMIT], None)
    body["options"] = {"evaluations_semantic": "deny_on_first_deny", "parallelism": 8, "vendor:x": {"y": 1}}
    assert [d["decision"] for d in batch(client, body)] == [True, False]


def test_az_13_batch_response_has_no_top_level_decision(client: httpx.Client) -> None:
    response = client.post(EVALUATIONS, json={**request(MORTY, "can_update_todo", MORTYS_TODO), "evaluations": [{}]})
    assert response.status_code == 200
    assert response.json() == {"evaluations": [{"decision": True}]}


def test_az_14_item_errors_are_never_true(client: httpx.Client) -> None:
    top = request(RICK, "can_delete_todo", TODOS[0])  # rick may delete every todo
    items: list[Any] = [{"resource": {"type": "todo"}}, {"subject": {"id": RICK}}, {"resource": resource(TODOS[0], x=0.123456)}, 5]
    for semantic in ("execute_all", "permit_on_first_permit"):
        result = batch(client, {**top, "evaluations": items, "options": {"evaluations_semantic": semantic}})
        assert [d["decision"] for d in result] == [False] * 4, semantic
        assert all("error" in d["context"] for d in result)


def test_az_14_item_with_bad_entity_escape_fails_alone(client: httpx.Client) -> None:
    """Property values pass through Cedar's `__extn`/`__entity` escapes; a malformed escape in one
    item is that item's problem (decision false), not a failure of the whole batch."""
    top = request(RICK, "can_delete_todo", TODOS[0])
    bad = {"resource": resource(TODOS[1], x={"__extn": {"fn": "ip", "arg": "not an ip"}})}
    response = client.post(EVALUATIONS, json={**top, "evaluations": [{}, bad, {}]})
    assert response.status_code == 200, response.text
    assert [d["decision"] for d in response.json()["evaluations"]] == [True, False, True]


@pytest.mark.parametrize(
    "value",
    [
        {"__extn": {"fn": "ip", "arg": "not an ip"}},
        {"__extn": {"fn": "no_such_function", "arg": "1"}},
        {"__entity": {"type": "not a type", "id": "x"}},
        {"__expr": "1 + 1"},
    ],
)
@pytest.mark.parametrize("where", ["subject", "resource"])
def test_az_51_malformed_property_value_is_not_a_server_error(client: httpx.Client, value: Any, where: str) -> None:
    """A value Cedar cannot accept is a problem of the request, like 0.123456: decision false
    with context.error, or a 400, never a 500 (§8.4: 500 is a PDP failure)."""
    body = request(RICK, "can_delete_todo", TODOS[0])
    body[where]["properties"] = {"x": value}
    response = client.post(EVALUATION, json=body)
    assert response.status_code in (200, 400), f"{response.status_code} {response.text}"
    if response.status_code == 200:
        assert response.json()["decision"] is False


# -- AZ-51: errors never replace decisions --------------------------------------------------


def test_az_51_batch_of_denies_and_errors_is_200(client: httpx.Client) -> None:
    result = batch(client, semantic_batch([DENY, BROKEN, DENY], None))
    assert [d["decision"] for d in result] == [False, False, False]


def test_az_51_unknown_entity_type_is_a_deny_not_an_error_status(client: httpx.Client) -> None:
    document = decide(client, request(MORTY, "can_update_todo", "x", resource_type="no-such type"))
    assert document["decision"] is False and document["context"]["error"]["status"] == 400
    document = decide(client, request(MORTY, "can_update_todo", "x", resource_type="Unknown"))
    assert document == {"decision": False, "context": {"reason": "no_matching_permit"}}


def test_az_51_unknown_action_is_a_deny(client: httpx.Client) -> None:
    assert decide(client, request(RICK, "no_such_action", TODOS[0])) == {"decision": False, "context": {"reason": "no_matching_permit"}}


def test_az_51_odd_identifiers_are_decided(client: httpx.Client) -> None:
    for odd in ['quote"inside', "new\nline", "ünïcødé ✓", "", " ", "a" * 2000]:
        assert decide(client, request(odd, "can_read_todos", odd))["decision"] is False
        assert decide(client, request(RICK, "can_delete_todo", odd))["decision"] is True


def test_az_51_rejected_evaluation_carries_no_decision(client: httpx.Client) -> None:
    body = request(MORTY, "can_update_todo", MORTYS_TODO)
    del body["subject"]["id"]
    assert_authzen_error(client.post(EVALUATION, json=body), 400)
