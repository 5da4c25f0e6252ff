"""Push rule evaluation: a user's effective ruleset compiled once, then matched against
events (spec: client-server API "Push Rules", conditions and their semantics).

Pure functions only; the rulesets come from `veche.core.push_rules`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

HISTORICAL_ACTIONS: Final[frozenset[str]] = frozenset({"dont_notify", "coalesce"})
KINDS: Final[tuple[str, ...]] = ("override", "content", "room", "sender", "underride")
_MAX_SAFE_INT: Final = 2**53 - 1
ROOM_MEMBER_COUNT_RE: Final = re.compile(r"\A(==|<=|>=|<|>)?([0-9]+)\Z")
_WORD_CHAR: Final = "A-Za-z0-9_"
_DEFAULT_NOTIFICATION_LEVEL: Final = 50

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def parse_dotted_path(path: str) -> tuple[str, ...]:
    """Split a dot-separated property path, honouring ``\\.`` and ``\\\\`` escapes.

    Other backslash sequences are kept literally (``\\x`` stays backslash + x).
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    n = len(path)
    while i < n:
        ch = path[i]
        if ch == "\\" and i + 1 < n and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


MISSING: Final = object()


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = event
    for part in path:
        if not isinstance(node, Mapping):
            return MISSING
        node = node.get(part, MISSING)
    return node


@functools.lru_cache(maxsize=4096)
def glob_to_regex(pattern: str, word_boundary: bool = False) -> re.Pattern[str]:
    """Compile a Matrix glob (``*`` and ``?``) into a case-insensitive regex.

    Without ``word_boundary`` the regex must match the whole value (use ``fullmatch``);
    with it, ``search`` finds a substring that starts and ends at a word boundary.
    """
    body = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    if word_boundary:
        body = f"(?<![{_WORD_CHAR}])(?:{body})(?![{_WORD_CHAR}])"
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _scalar_equal(a: Any, b: Any) -> bool:
    """Exact canonical-JSON equality: no casting, ``True`` is not ``1``."""
    return type(a) is type(b) and a == b and is_scalar(a)


# --------------------------------------------------------------------------- actions


def normalize_actions(actions: Iterable[Any]) -> list[Any]:
    """Strip the historical ``dont_notify`` / ``coalesce`` actions."""
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def actions_notify(actions: Sequence[Any]) -> bool:
    return "notify" in actions


def actions_tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    """The tweaks set by ``actions`` (``highlight`` without a value means ``True``)."""
    tweaks: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            if "value" in action:
                tweaks[name] = action["value"]
            elif name == "highlight":
                tweaks[name] = True
    return tweaks


def actions_highlight(actions: Sequence[Any]) -> bool:
    """Whether the ``highlight`` tweak is set (absent -> False, no value -> True)."""
    highlight = False
    for action in actions:
        if isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return highlight


# --------------------------------------------------------------------------- evaluation


class _Context:
    __slots__ = ("display_name", "power_levels", "room_member_count", "sender_power_level",
                 "user_id")

    def __init__(self, user_id: str, display_name: str | None, room_member_count: int,
                 power_levels: Mapping[str, Any], sender_power_level: int) -> None:
        self.user_id = user_id
        self.display_name = display_name
        self.room_member_count = room_member_count
        self.power_levels = power_levels
        self.sender_power_level = sender_power_level


_Matcher = Callable[[Mapping[str, Any], _Context], bool]


def _never(event: Mapping[str, Any], ctx: _Context) -> bool:
    return False


_BODY_PATH: Final = ("content", "body")


def _compile_event_match(key: str, pattern: str) -> _Matcher:
    path = parse_dotted_path(key)
    if path == _BODY_PATH:
        search = glob_to_regex(pattern, True).search

        def match_body(event: Mapping[str, Any], ctx: _Context) -> bool:
            value = _lookup(event, path)
            return isinstance(value, str) and search(value) is not None

        return match_body
    if "*" not in pattern and "?" not in pattern:
        folded = pattern.casefold()

        def match_literal(event: Mapping[str, Any], ctx: _Context) -> bool:
            value = _lookup(event, path)
            return isinstance(value, str) and (value == pattern or value.casefold() == folded)

        return match_literal
    fullmatch = glob_to_regex(pattern).fullmatch

    def match_glob(event: Mapping[str, Any], ctx: _Context) -> bool:
        value = _lookup(event, path)
        return isinstance(value, str) and fullmatch(value) is not None

    return match_glob


def _compile_property_is(key: str, expected: Any) -> _Matcher:
    path = parse_dotted_path(key)

    def match(event: Mapping[str, Any], ctx: _Context) -> bool:
        return _scalar_equal(_lookup(event, path), expected)

    return match


def _compile_property_contains(key: str, expected: Any) -> _Matcher:
    path = parse_dotted_path(key)

    def match(event: Mapping[str, Any], ctx: _Context) -> bool:
        value = _lookup(event, path)
        return isinstance(value, list) and any(_scalar_equal(v, expected) for v in value)

    return match


def _match_display_name(event: Mapping[str, Any], ctx: _Context) -> bool:
    name = ctx.display_name
    if not name:
        return False
    body = _lookup(event, _BODY_PATH)
    if not isinstance(body, str):
        return False
    regex = _literal_word_regex(name)
    return regex.search(body) is not None


@functools.lru_cache(maxsize=4096)
def _literal_word_regex(text: str) -> re.Pattern[str]:
    return re.compile(f"(?<![{_WORD_CHAR}])(?:{re.escape(text)})(?![{_WORD_CHAR}])",
                      re.IGNORECASE)


def _compile_member_count(is_: str) -> _Matcher:
    m = ROOM_MEMBER_COUNT_RE.match(is_)
    if m is None:
        return _never
    op = m.group(1) or "=="
    number = int(m.group(2))
    compare: Callable[[int], bool] = {
        "==": lambda c: c == number,
        "<": lambda c: c < number,
        ">": lambda c: c > number,
        "<=": lambda c: c <= number,
        ">=": lambda c: c >= number,
    }[op]

    def match(event: Mapping[str, Any], ctx: _Context) -> bool:
        return compare(ctx.room_member_count)

    return match


def _notification_level(power_levels: Mapping[str, Any], key: str) -> int:
    notifications = power_levels.get("notifications")
    level: Any = _DEFAULT_NOTIFICATION_LEVEL
    if isinstance(notifications, Mapping) and key in notifications:
        level = notifications[key]
    if isinstance(level, bool):
        return _DEFAULT_NOTIFICATION_LEVEL
    if isinstance(level, int):
        return level
    if isinstance(level, str):  # string levels exist in rooms before v10
        try:
            return int(level.strip())
        except ValueError:
            return _DEFAULT_NOTIFICATION_LEVEL
    return _DEFAULT_NOTIFICATION_LEVEL


def _compile_sender_permission(key: str) -> _Matcher:
    def match(event: Mapping[str, Any], ctx: _Context) -> bool:
        return ctx.sender_power_level >= _notification_level(ctx.power_levels, key)

    return match


def _compile_condition(cond: Any) -> _Matcher:
    if not isinstance(cond, Mapping):
        return _never
    kind = cond.get("kind")
    key = cond.get("key")
    if kind == "event_match":
        pattern = cond.get("pattern")
        if isinstance(key, str) and isinstance(pattern, str):
            return _compile_event_match(key, pattern)
    elif kind == "event_property_is":
        if isinstance(key, str) and "value" in cond and is_scalar(cond["value"]):
            return _compile_property_is(key, cond["value"])
    elif kind == "event_property_contains":
        if isinstance(key, str) and "value" in cond and is_scalar(cond["value"]):
            return _compile_property_contains(key, cond["value"])
    elif kind == "contains_display_name":
        return _match_display_name
    elif kind == "room_member_count":
        is_ = cond.get("is")
        if isinstance(is_, str):
            return _compile_member_count(is_)
    elif kind == "sender_notification_permission":
        if isinstance(key, str):
            return _compile_sender_permission(key)
    return _never


class _CompiledRule:
    __slots__ = ("actions", "event_type", "kind", "matchers", "rule_id")

    def __init__(self, kind: str, rule_id: str, matchers: tuple[_Matcher, ...],
                 actions: list[Any], event_type: str | None = None) -> None:
        self.kind = kind
        self.rule_id = rule_id
        self.matchers = matchers
        self.actions = actions
        # The only event type (casefolded) the rule can match, if a condition names one:
        # most rules are skipped on the type alone.
        self.event_type = event_type

    def matches(self, event: Mapping[str, Any], ctx: _Context) -> bool:
        for m in self.matchers:
            if not m(event, ctx):
                return False
        return True


def _compile_rule(kind: str, rule: Mapping[str, Any]) -> _CompiledRule | None:
    rule_id = rule.get("rule_id")
    if not isinstance(rule_id, str) or not rule.get("enabled", True):
        return None
    actions = rule.get("actions")
    actions = normalize_actions(actions) if isinstance(actions, list) else []
    matchers: tuple[_Matcher, ...]
    event_type = None
    if kind in ("override", "underride"):
        conditions = rule.get("conditions") or []
        if not isinstance(conditions, list):
            return None
        matchers = tuple(_compile_condition(c) for c in conditions)
        event_type = next((c["pattern"].casefold() for c in conditions
                           if isinstance(c, Mapping) and c.get("kind") == "event_match"
                           and c.get("key") == "type" and isinstance(c.get("pattern"), str)
                           and "*" not in c["pattern"] and "?" not in c["pattern"]), None)
    elif kind == "content":
        pattern = rule.get("pattern")
        if not isinstance(pattern, str):
            return None
        matchers = (_compile_event_match("content.body", pattern),)
    elif kind == "room":
        matchers = (_compile_property_is("room_id", rule_id),)
    elif kind == "sender":
        matchers = (_compile_property_is("sender", rule_id),)
    else:
        return None
    if any(m is _never for m in matchers):
        return None  # an unrecognised condition disables the rule
    return _CompiledRule(kind, rule_id, matchers, actions, event_type)


class PushEvaluator:
    """A ruleset compiled for fast evaluation; build once per ruleset change."""

    __slots__ = ("_rules",)

    def __init__(self, ruleset: Mapping[str, Any]) -> None:
        scope = ruleset.get("global", ruleset)
        compiled: list[_CompiledRule] = []
        for kind in KINDS:
            for rule in scope.get(kind) or []:
                if isinstance(rule, Mapping):
                    c = _compile_rule(kind, rule)
                    if c is not None:
                        compiled.append(c)
        self._rules: tuple[_CompiledRule, ...] = tuple(compiled)

    def matching_rule(
        self,
        event: Mapping[str, Any],
        *,
        user_id: str,
        display_name: str | None,
        room_member_count: int,
        power_levels: Mapping[str, Any],
        sender_power_level: int,
    ) -> tuple[str, str, list[Any]] | None:
        """(kind, rule_id, actions) of the highest-priority matching rule, or None.

        Events sent by ``user_id`` themselves never match.
        """
        if event.get("sender") == user_id:
            return None
        ctx = _Context(user_id, display_name, room_member_count, power_levels or {},
                       sender_power_level)
        event_type = event.get("type")
        folded = event_type.casefold() if isinstance(event_type, str) else None
        for rule in self._rules:
            if rule.event_type is not None and rule.event_type != folded:
                continue
            if rule.matches(event, ctx):
                return rule.kind, rule.rule_id, list(rule.actions)
        return None

    def evaluate(
        self,
        event: Mapping[str, Any],
        *,
        user_id: str,
        display_name: str | None,
        room_member_count: int,
        power_levels: Mapping[str, Any],
        sender_power_level: int,
    ) -> list[Any]:
        """The actions of the highest-priority matching rule (``[]`` if none)."""
        found = self.matching_rule(event, user_id=user_id, display_name=display_name,
                                   room_member_count=room_member_count,
                                   power_levels=power_levels,
                                   sender_power_level=sender_power_level)
        return found[2] if found is not None else []


def evaluate(
    event: Mapping[str, Any],
    ruleset: Mapping[str, Any],
    *,
    user_id: str,
    display_name: str | None,
    room_member_count: int,
    power_levels: Mapping[str, Any],
    sender_power_level: int,
) -> list[Any]:
    """One-shot :meth:`PushEvaluator.evaluate` (compile + evaluate)."""
    return PushEvaluator(ruleset).evaluate(
        event, user_id=user_id, display_name=display_name,
        room_member_count=room_member_count, power_levels=power_levels,
        sender_power_level=sender_power_level)
