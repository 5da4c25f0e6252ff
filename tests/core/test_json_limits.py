"""The depth limits against the encoder they protect, and leaving out too-deep items."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from veche.core.json_limits import MAX_JSON_DEPTH, ORJSON_MAX_DEPTH, json_depth, prune_too_deep


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_orjson_limit_is_what_we_think() -> None:
    orjson.dumps(nested(ORJSON_MAX_DEPTH))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(nested(ORJSON_MAX_DEPTH + 1))
    # Room for the deepest wrapping responses put around a body (15 levels), and then some.
    assert MAX_JSON_DEPTH + 15 < ORJSON_MAX_DEPTH // 2


def test_depth() -> None:
    assert [json_depth(v) for v in (1, [], {}, [[]], {"a": [1, {"b": {}}]})] == [0, 1, 1, 2, 4]
    assert json_depth(nested(900)) == 900


def event(n: int, content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": f"$e{n}", "content": content}


def test_listed_items_too_deep_are_left_out() -> None:
    timeline = [event(1, {}), event(2, {"x": nested(300)}), event(3, {"l": [[nested(300)]]})]
    body = {"rooms": {"join": {"!r": {"timeline": {"events": timeline}}}},
            "to_device": {"events": [{"type": "t", "sender": "@s", "content": nested(260)}]},
            "next_batch": "s1"}
    pruned = prune_too_deep(body)
    assert pruned.body == {"rooms": {"join": {"!r": {"timeline": {"events": [event(1, {})]}}}},
                           "to_device": {"events": []}, "next_batch": "s1"}
    assert sorted(pruned.dropped) == [
        "rooms.join.!r.timeline.events[1] (event_id $e2)",
        "rooms.join.!r.timeline.events[2] (event_id $e3)",
        "to_device.events[0] (type t)"]
    assert pruned.unservable == []
    assert len(timeline) == 3  # the input is left alone
    orjson.dumps(pruned.body)


def test_an_item_inside_an_item_goes_with_its_outer_item() -> None:
    # A bundled thread reply too deep: the root event it is bundled into is left out, not
    # some list inside either event's content.
    root = event(1, {"l": [1]})
    root["unsigned"] = {"m.relations": {"m.thread": {"latest_event": event(2, [nested(300)])}}}
    results = {"results": [{"rank": 1, "result": root}, {"rank": 2, "result": event(3, {})}]}
    pruned = prune_too_deep(results)
    assert pruned.body == {"results": [{"rank": 2, "result": event(3, {})}]}
    assert pruned.dropped == ["results[0] (event_id $e1)"]


def test_an_unlisted_item_is_unservable() -> None:
    pruned = prune_too_deep(event(1, {"l": [nested(300)]}))
    assert pruned.unservable == ["<response> (event_id $e1)"] and pruned.dropped == []
    assert prune_too_deep({"keys": nested(300)}).unservable != []
