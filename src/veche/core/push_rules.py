"""Push rules: the default ruleset, merging user rules and validation; evaluation is in
`veche.core.push_evaluator` (its names are re-exported here).

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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from veche.core.push_evaluator import (
    HISTORICAL_ACTIONS,
    KINDS,
    MISSING,
    ROOM_MEMBER_COUNT_RE,
    PushEvaluator,
    actions_highlight,
    actions_notify,
    actions_tweaks,
    evaluate,
    glob_to_regex,
    is_scalar,
    normalize_actions,
    parse_dotted_path,
)
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

MASTER_RULE_ID: Final = ".m.rule.master"

JsonDict = dict[str, Any]


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
    return overrides.get(rule_id, MISSING)


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
        if enabled is MISSING:
            enabled = rule.get("enabled", True)
        actions = _lookup_override(actions_overrides, kind, rule_id)
        if actions is MISSING:
            actions = rule.get("actions") or []
        by_kind[kind].append(_public_rule(kind, rule, default=False, enabled=bool(enabled),
                                          actions=normalize_actions(actions)))

    result: JsonDict = {}
    for kind in KINDS:
        defaults: list[JsonDict] = []
        for rule in default_rules(kind, user_id):
            enabled = _lookup_override(enabled_overrides, kind, rule["rule_id"])
            if enabled is not MISSING:
                rule["enabled"] = bool(enabled)
            actions = _lookup_override(actions_overrides, kind, rule["rule_id"])
            if actions is not MISSING:
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
        if not is_scalar(value):
            raise ValueError(f"'{kind}' condition 'value' must be a string, an integer in "
                             "the canonical JSON range, a boolean or null")
        return {"kind": kind, "key": key, "value": value}
    if kind == "contains_display_name":
        return {"kind": kind}
    if kind == "room_member_count":
        is_ = _require_str(cond, "is", kind)
        if not ROOM_MEMBER_COUNT_RE.match(is_):
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


