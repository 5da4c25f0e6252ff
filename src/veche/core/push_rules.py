"""Push rules: the default ruleset, merging user rules, validation and evaluation.

Pure functions only. The effective ruleset has the shape of the ``m.push_rules``
account data content and of ``GET /pushrules/``::

    {"global": {"override": [...], "content": [...], "room": [...],
                "sender": [...], "underride": [...]}}

Evaluation order follows the spec: override, content, room, sender, underride; within
a kind, list order. ``.m.rule.master`` always comes first, even before user overrides;
other server-default rules come after the user's rules of the same kind.

Typical server use::

    ruleset = merge_user_rules(user_id, stored_rules, enabled_overrides, actions_overrides)
    evaluator = PushEvaluator(ruleset)          # compile once, cache per user
    actions = evaluator.evaluate(event, user_id=..., display_name=..., room_member_count=...,
                                 power_levels=pl_content, sender_power_level=pl)
    if actions_notify(actions): ...
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from veche.core.push_rules_default import DEFAULT_RULES_BY_KIND, default_rules

__all__ = [
    "KINDS",
    "PushEvaluator",
    "actions_highlight",
    "actions_notify",
    "actions_tweaks",
    "default_ruleset",
    "evaluate",
    "find_rule",
    "glob_to_regex",
    "merge_user_rules",
    "normalize_actions",
    "parse_dotted_path",
    "place_rule",
    "validate_actions",
    "validate_rule",
]

KINDS: Final[tuple[str, ...]] = ("override", "content", "room", "sender", "underride")
MASTER_RULE_ID: Final = ".m.rule.master"
HISTORICAL_ACTIONS: Final[frozenset[str]] = frozenset({"dont_notify", "coalesce"})
_MAX_SAFE_INT: Final = 2**53 - 1
_ROOM_MEMBER_COUNT_RE: Final = re.compile(r"\A(==|<=|>=|<|>)?([0-9]+)\Z")
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


_MISSING: Final = object()


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = event
    for part in path:
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(part, _MISSING)
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


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _scalar_equal(a: Any, b: Any) -> bool:
    """Exact canonical-JSON equality: no casting, ``True`` is not ``1``."""
    return type(a) is type(b) and a == b and _is_scalar(a)


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


# --------------------------------------------------------------------------- rulesets


def default_ruleset(user_id: str) -> JsonDict:
    """The server-default push ruleset for ``user_id``."""
    return {"global": {kind: default_rules(kind, user_id) for kind in KINDS}}


def _lookup_override(overrides: Mapping[str, Any], kind: str, rule_id: str) -> Any:
    qualified = f"{kind}/{rule_id}"
    if qualified in overrides:
        return overrides[qualified]
    global_qualified = f"global/{kind}/{rule_id}"
    if global_qualified in overrides:
        return overrides[global_qualified]
    return overrides.get(rule_id, _MISSING)


def _public_rule(kind: str, rule: Mapping[str, Any], *, default: bool, enabled: bool,
                 actions: list[Any]) -> JsonDict:
    out: JsonDict = {"rule_id": rule["rule_id"], "default": default, "enabled": enabled,
                     "actions": actions}
    if kind in ("override", "underride"):
        out["conditions"] = [dict(c) for c in rule.get("conditions") or []]
    elif kind == "content":
        out["pattern"] = rule.get("pattern", "")
    return out


def merge_user_rules(
    user_id: str,
    user_rules: Iterable[Mapping[str, Any]],
    enabled_overrides: Mapping[str, bool],
    actions_overrides: Mapping[str, list[Any]],
) -> JsonDict:
    """The effective ruleset: user rules merged with the server defaults.

    ``user_rules`` are the user's own rules in priority order (most important first),
    each with a ``kind`` key plus the fields :func:`validate_rule` returns; an
    ``enabled`` key on a user rule is honoured. ``enabled_overrides`` and
    ``actions_overrides`` map ``"kind/rule_id"`` (or ``"global/kind/rule_id"``, or for
    server-default rules simply the rule ID) to a new enabled flag / actions list.
    """
    by_kind: dict[str, list[JsonDict]] = {k: [] for k in KINDS}
    seen: set[tuple[str, str]] = set()
    for rule in user_rules:
        kind = rule.get("kind")
        rule_id = rule.get("rule_id")
        if kind not in by_kind or not isinstance(rule_id, str):
            continue
        if (kind, rule_id) in seen or rule_id.startswith("."):
            continue
        seen.add((kind, rule_id))
        enabled = _lookup_override(enabled_overrides, kind, rule_id)
        if enabled is _MISSING:
            enabled = rule.get("enabled", True)
        actions = _lookup_override(actions_overrides, kind, rule_id)
        if actions is _MISSING:
            actions = rule.get("actions") or []
        by_kind[kind].append(_public_rule(kind, rule, default=False, enabled=bool(enabled),
                                          actions=normalize_actions(actions)))

    result: JsonDict = {}
    for kind in KINDS:
        defaults: list[JsonDict] = []
        for rule in default_rules(kind, user_id):
            enabled = _lookup_override(enabled_overrides, kind, rule["rule_id"])
            if enabled is not _MISSING:
                rule["enabled"] = bool(enabled)
            actions = _lookup_override(actions_overrides, kind, rule["rule_id"])
            if actions is not _MISSING:
                rule["actions"] = normalize_actions(actions)
            defaults.append(rule)
        master = [r for r in defaults if r["rule_id"] == MASTER_RULE_ID]
        rest = [r for r in defaults if r["rule_id"] != MASTER_RULE_ID]
        result[kind] = master + by_kind[kind] + rest
    return {"global": result}


def find_rule(ruleset: Mapping[str, Any], kind: str, rule_id: str) -> JsonDict | None:
    """The rule ``kind``/``rule_id`` in an effective ruleset, or None."""
    scope = ruleset.get("global", ruleset)
    for rule in scope.get(kind) or []:
        if rule.get("rule_id") == rule_id:
            return dict(rule)
    return None


def is_server_default_rule_id(kind: str, rule_id: str) -> bool:
    return any(r["rule_id"] == rule_id for r in DEFAULT_RULES_BY_KIND.get(kind, ()))


# --------------------------------------------------------------------------- validation


def validate_actions(actions: Any) -> list[Any]:
    """Validate and normalise an actions array (historical actions are stripped)."""
    if not isinstance(actions, list):
        raise ValueError("'actions' must be a list")
    out: list[Any] = []
    for action in actions:
        if isinstance(action, str):
            if action in HISTORICAL_ACTIONS:
                continue
            if action != "notify":
                raise ValueError(f"Unrecognised action: {action!r}")
            out.append(action)
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                raise ValueError(f"Unrecognised action: {action!r} (object actions need a "
                                 "string 'set_tweak')")
            out.append(dict(action))
        else:
            raise ValueError(f"Unrecognised action: {action!r}")
    return out


def _require_str(cond: Mapping[str, Any], field: str, kind: str) -> str:
    value = cond.get(field)
    if not isinstance(value, str):
        raise ValueError(f"'{kind}' condition requires a string '{field}'")
    return value


def _validate_condition(cond: Any) -> JsonDict:
    if not isinstance(cond, dict):
        raise ValueError("each condition must be an object")
    kind = cond.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError("each condition requires a string 'kind'")
    if kind == "event_match":
        return {"kind": kind, "key": _require_str(cond, "key", kind),
                "pattern": _require_str(cond, "pattern", kind)}
    if kind in ("event_property_is", "event_property_contains"):
        key = _require_str(cond, "key", kind)
        if "value" not in cond:
            raise ValueError(f"'{kind}' condition requires 'value'")
        value = cond["value"]
        if not _is_scalar(value):
            raise ValueError(f"'{kind}' condition 'value' must be a string, an integer in "
                             "the canonical JSON range, a boolean or null")
        return {"kind": kind, "key": key, "value": value}
    if kind == "contains_display_name":
        return {"kind": kind}
    if kind == "room_member_count":
        is_ = _require_str(cond, "is", kind)
        if not _ROOM_MEMBER_COUNT_RE.match(is_):
            raise ValueError(f"'room_member_count' condition has invalid 'is': {is_!r}")
        return {"kind": kind, "is": is_}
    if kind == "sender_notification_permission":
        return {"kind": kind, "key": _require_str(cond, "key", kind)}
    # Unrecognised conditions are stored as given; they never match.
    return dict(cond)


def validate_rule(kind: str, rule_id: str, body: Any) -> JsonDict:
    """Validate a ``PUT /pushrules/global/{kind}/{ruleId}`` request.

    Returns the normalised rule in its public form (``rule_id``, ``default: false``,
    ``enabled: true``, ``actions`` and ``conditions`` or ``pattern`` as the kind needs).
    Raises ValueError with a message suitable for an ``M_INVALID_PARAM`` /
    ``M_BAD_JSON`` error.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown push rule kind: {kind!r}")
    if not isinstance(rule_id, str) or not rule_id:
        raise ValueError("rule_id must be a non-empty string")
    if rule_id.startswith("."):
        raise ValueError("rule_id starting with '.' is reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise ValueError("rule_id may not contain '/' or '\\'")
    if kind == "room" and not rule_id.startswith("!"):
        raise ValueError("the rule_id of a room rule must be a room ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise ValueError("the rule_id of a sender rule must be a user ID")
    if not isinstance(body, dict):
        raise ValueError("push rule body must be a JSON object")
    if "actions" not in body:
        raise ValueError("missing 'actions'")
    actions = validate_actions(body["actions"])
    rule: JsonDict = {"rule_id": rule_id, "default": False, "enabled": True,
                      "actions": actions}
    if kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise ValueError("content rules require a string 'pattern'")
        rule["pattern"] = pattern
    elif kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list):
            raise ValueError("'conditions' must be a list")
        rule["conditions"] = [_validate_condition(c) for c in conditions]
    return rule


def place_rule(
    rules: Sequence[Mapping[str, Any]],
    rule: Mapping[str, Any],
    *,
    before: str | None = None,
    after: str | None = None,
) -> list[JsonDict]:
    """Insert or update ``rule`` in a kind's ordered list of *user* rules.

    Follows ``PUT /pushrules``: ``before`` wins over ``after``; a new rule without
    either becomes the most important; an existing rule without either keeps its
    place. Raises ValueError for a relative rule that is a server-default rule or
    is not found ("before/after rule not found: X").
    """
    rule_id = rule["rule_id"]
    out = [dict(r) for r in rules]
    existing = next((i for i, r in enumerate(out) if r.get("rule_id") == rule_id), None)
    anchor = before if before is not None else after
    if anchor is None:
        if existing is not None:
            out[existing] = dict(rule)
        else:
            out.insert(0, dict(rule))
        return out
    if anchor.startswith("."):
        raise ValueError("It is not possible to add a rule relative to a server-default rule")
    if existing is not None:
        del out[existing]
    idx = next((i for i, r in enumerate(out) if r.get("rule_id") == anchor), None)
    if idx is None or anchor == rule_id:
        raise ValueError(f"before/after rule not found: {anchor}")
    out.insert(idx if before is not None else idx + 1, dict(rule))
    return out


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
    m = _ROOM_MEMBER_COUNT_RE.match(is_)
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
        if isinstance(key, str) and "value" in cond and _is_scalar(cond["value"]):
            return _compile_property_is(key, cond["value"])
    elif kind == "event_property_contains":
        if isinstance(key, str) and "value" in cond and _is_scalar(cond["value"]):
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
    __slots__ = ("actions", "kind", "matchers", "rule_id")

    def __init__(self, kind: str, rule_id: str, matchers: tuple[_Matcher, ...],
                 actions: list[Any]) -> None:
        self.kind = kind
        self.rule_id = rule_id
        self.matchers = matchers
        self.actions = actions

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
    if kind in ("override", "underride"):
        conditions = rule.get("conditions") or []
        if not isinstance(conditions, list):
            return None
        matchers = tuple(_compile_condition(c) for c in conditions)
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
    return _CompiledRule(kind, rule_id, matchers, actions)


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
        for rule in self._rules:
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
