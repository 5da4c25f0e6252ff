"""How deeply JSON may nest, on the way in and on the way out.

orjson writes every response and refuses more than ORJSON_MAX_DEPTH nested containers.
Responses wrap what clients stored: the deepest so far is a /search result's context,
``search_categories.room_events.results[i].context.events_before[j].unsigned.m.relations
.m.thread.latest_event.unsigned.m.relations.m.replace.content``, 15 containers above the
stored body. Bodies deeper than that margin used to be accepted and then break every
response that carried them (a recipient's /sync, for good). So request bodies may nest
MAX_JSON_DEPTH deep, far below the encoder's limit, and a response meeting a stored item
that is too deep anyway (stored before the limit) leaves that item out. Likewise integers
orjson would not read back exactly are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_JSON_DEPTH = 100
ORJSON_MAX_DEPTH = 254
# The integers orjson reads and writes exactly.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def json_depth(value: object) -> int:
    """Nested containers in `value`: 0 for a scalar, 1 for ``[]`` or ``{"a": 1}``."""
    return json_shape(value)[0]


def json_shape(value: object) -> tuple[int, bool]:
    """(json_depth, whether any number in it is a float)."""
    deepest, floats = 0, False
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            floats = floats or isinstance(node, float)
            continue
        deepest = max(deepest, depth)
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif isinstance(child, float):
                floats = True
    return deepest, floats


def exact_int(literal: str) -> int:
    """An integer literal, if orjson keeps it exact; it reads bigger ones as floats, which
    would come back changed (10**30 as 1e+30)."""
    value = int(literal)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"integer {literal[:30]} out of range")
    return value


def _is_item(node: object) -> bool:
    """An event, account data entry, to-device message, stripped state...: what responses list."""
    return isinstance(node, dict) and isinstance(node.get("type"), str) and "content" in node


def _describe(path: str, item: object) -> str:
    if isinstance(item, dict):
        for key in ("event_id", "type"):
            if isinstance(item.get(key), str):
                return f"{path} ({key} {item[key]})"
    return path


@dataclass
class Pruned:
    """A response without its too-deep items."""

    body: Any
    dropped: list[str] = field(default_factory=list)  # where, for the log
    # Too deep, but not within a list item that could be left out (e.g. /event's event).
    unservable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Slot:
    """A list element: what is left out when something in it is too deep."""

    list_id: int
    index: int
    path: str
    ancestors: tuple[int, ...]  # containers from the root down to the list


def prune_too_deep(body: Any, max_depth: int = ORJSON_MAX_DEPTH) -> Pruned:
    """`body` without each list element whose event-like item (the outermost object on
    the way down that has a type and content) nests past `max_depth`; `body` itself is not
    modified. Things too deep outside any such item are reported as unservable."""
    out = Pruned(body)
    dropped: dict[tuple[int, int], _Slot] = {}
    # (node, depth, path, ancestors, nearest list element above, the item's slot once in one)
    stack: list[tuple[object, int, str, tuple[int, ...], _Slot | None, _Slot | str | None]] = [
        (body, 1, "", (), None, None)]
    while stack:
        node, depth, path, ancestors, slot, item_slot = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if item_slot is None and _is_item(node):
            # Left out with the list element around it; an item in no list can't be.
            item_slot = slot if slot is not None else _describe(path or "<response>", node)
            if isinstance(item_slot, _Slot):
                item_slot = _Slot(item_slot.list_id, item_slot.index,
                                  _describe(item_slot.path, node), item_slot.ancestors)
        if depth > max_depth:
            if isinstance(item_slot, _Slot):
                if (item_slot.list_id, item_slot.index) not in dropped:
                    dropped[(item_slot.list_id, item_slot.index)] = item_slot
                    out.dropped.append(item_slot.path)
            else:
                where = item_slot if item_slot is not None else (path or "<response>")[:120]
                if where not in out.unservable:
                    out.unservable.append(where)
            continue
        inner = ancestors if item_slot is not None else (*ancestors, id(node))
        if isinstance(node, dict):
            for key, child in node.items():
                stack.append((child, depth + 1, f"{path}.{key}".lstrip("."), inner, slot, item_slot))
        else:
            for i, child in enumerate(node):
                child_path = f"{path}[{i}]"
                child_slot = slot if item_slot is not None else _Slot(id(node), i, child_path, inner)
                stack.append((child, depth + 1, child_path, inner, child_slot, item_slot))
    if dropped:
        dirty = {a for s in dropped.values() for a in s.ancestors}
        out.body = _rebuild(body, set(dropped), dirty)
    return out


def _rebuild(node: Any, drops: set[tuple[int, int]], dirty: set[int]) -> Any:
    # Only the containers above a dropped element are copied: they sit above the items,
    # a few levels down, so this recursion stays shallow.
    if id(node) not in dirty:
        return node
    if isinstance(node, dict):
        return {k: _rebuild(v, drops, dirty) for k, v in node.items()}
    return [_rebuild(v, drops, dirty) for i, v in enumerate(node) if (id(node), i) not in drops]
