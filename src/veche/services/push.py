"""Push rules (per user, merged with the server defaults) and unread notification counts.

Every event persisted in a room is evaluated against the push rules of the room's joined
members inside the persisting transaction (`on_event_persisted`): one shared row for the
members with default rules (room_push_actions) and rows only for members whose actions
differ (event_push_actions). Read receipts move push_read_positions; /sync's unread counts
are two grouped queries over what lies past them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from veche.core import push_rules as rules_core
from veche.core.auth import get_user_power_level
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.errors import MatrixError, not_found
from veche.services.pushers import notify_pushers
from veche.storage import events as event_store
from veche.storage import push as store
from veche.storage import sync as sync_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

KINDS = rules_core.KINDS
# thread_id (None: the main timeline) -> (notification_count, highlight_count)
Counts = dict[str | None, tuple[int, int]]


def _key(kind: str, rule_id: str) -> str:
    return f"{kind}/{rule_id}"


def effective_ruleset(user_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return rules_core.merge_user_rules(
        user_id, doc.get("rules") or [], doc.get("enabled") or {}, doc.get("actions") or {}
    )


class PushService:
    _CACHE_MAX = 20_000

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._lock = threading.Lock()
        # user_id -> (evaluator, whether the user has only the server-default rules)
        self._evaluators: OrderedDict[str, tuple[rules_core.PushEvaluator, bool]] = OrderedDict()
        # Bumped whenever a user's rules change, so an evaluator built from rules read
        # before the change is never cached after it.
        self._generation = 0
        # room_id -> {user_id: display name} of joined members; dropped on member events.
        self._members: OrderedDict[str, dict[str, str | None]] = OrderedDict()
        # room_id -> (rules generation, the members dict it was computed for, the members
        # with rules of their own).
        self._custom: OrderedDict[str, tuple[int, dict[str, str | None], set[str]]] = OrderedDict()
        # (user_id, room_id) -> (stream position, unread counts up to it), so a /sync only
        # counts what came since; dropped when the user's read positions move.
        self._counts: OrderedDict[tuple[str, str], tuple[int, Counts]] = OrderedDict()
        self._counts_generation = 0

    # --- rules ----------------------------------------------------------------------------
    async def get_ruleset(self, user_id: str) -> dict[str, Any]:
        doc = await self.hs.db.run(store.get_user_rules, user_id)
        return effective_ruleset(user_id, doc)

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
        self._check_kind(kind)
        rule = rules_core.find_rule(await self.get_ruleset(user_id), kind, rule_id)
        if rule is None:
            raise not_found("The push rule was not found.")
        return rule

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise MatrixError(400, "M_INVALID_PARAM", f"Unknown push rule kind: {kind}")

    async def put_rule(
        self, user_id: str, kind: str, rule_id: str, body: dict[str, Any],
        before: str | None, after: str | None,
    ) -> None:
        self._check_kind(kind)
        if rules_core.is_server_default_rule_id(kind, rule_id) or rule_id.startswith("."):
            raise MatrixError(400, "M_INVALID_PARAM", "Server-default rules cannot be replaced")
        try:
            rule = rules_core.validate_rule(kind, rule_id, body)
        except ValueError as e:
            raise MatrixError(400, "M_INVALID_PARAM", str(e)) from None

        def change(doc: dict[str, Any]) -> None:
            rules = doc.setdefault("rules", [])
            mine = [r for r in rules if r.get("kind") == kind]
            others = [r for r in rules if r.get("kind") != kind]
            stored = {k: v for k, v in rule.items() if k != "default"}
            stored["kind"] = kind
            try:
                placed = rules_core.place_rule(mine, stored, before=before, after=after)
            except ValueError as e:
                raise MatrixError(400, "M_UNKNOWN", str(e)) from None
            doc["rules"] = others + placed
            doc.setdefault("enabled", {}).pop(_key(kind, rule_id), None)
            doc.setdefault("actions", {}).pop(_key(kind, rule_id), None)

        await self._update(user_id, change)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        self._check_kind(kind)

        def change(doc: dict[str, Any]) -> None:
            rules = doc.get("rules") or []
            kept = [r for r in rules if not (r.get("kind") == kind and r.get("rule_id") == rule_id)]
            if len(kept) == len(rules):
                if rules_core.is_server_default_rule_id(kind, rule_id):
                    raise MatrixError(400, "M_INVALID_PARAM", "Server-default rules cannot be deleted")
                raise not_found("The push rule was not found.")
            doc["rules"] = kept

        await self._update(user_id, change)

    async def set_attribute(self, user_id: str, kind: str, rule_id: str, attr: str, value: Any) -> None:
        self._check_kind(kind)

        def change(doc: dict[str, Any]) -> None:
            user_rule = next((r for r in doc.get("rules") or []
                              if r.get("kind") == kind and r.get("rule_id") == rule_id), None)
            if user_rule is None and not _is_default(user_id, kind, rule_id):
                raise not_found("The push rule was not found.")
            if user_rule is not None:
                user_rule[attr] = value
            else:
                doc.setdefault(attr, {})[_key(kind, rule_id)] = value

        await self._update(user_id, change)

    async def _update(self, user_id: str, change: Any) -> None:
        def txn_fn(txn: Txn, pos: int) -> None:
            doc = store.get_user_rules(txn, user_id)
            change(doc)
            store.set_user_rules(txn, user_id, doc)
            sync_store.set_account_data(
                txn, user_id, "", "m.push_rules", effective_ruleset(user_id, doc), pos
            )
            txn.call_after(lambda: self._forget_user(user_id))

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(txn_fn, pos)
        self.hs.notifier.notify([user_id])

    def _forget_user(self, user_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._evaluators.pop(user_id, None)

    # --- unread counts ----------------------------------------------------------------------
    def mark_read(
        self, txn: Txn, user_id: str, room_id: str, upto: int, thread_id: str | None
    ) -> None:
        """The user has read `room_id` up to `upto` (see storage.push.mark_read)."""
        store.mark_read(txn, user_id, room_id, upto, thread_id)
        self._forget_counts(user_id, room_id)
        txn.call_after(lambda: self._forget_counts(user_id, room_id))

    def _forget_counts(self, user_id: str, room_id: str) -> None:
        with self._lock:
            self._counts_generation += 1
            self._counts.pop((user_id, room_id), None)

    def unread_counts_txn(
        self, txn: Txn, user_id: str, room_ids: list[str], upto: int
    ) -> dict[str, Counts]:
        """Unread counts of `room_ids` as of stream position `upto`."""
        out: dict[str, Counts] = {}
        fresh: list[str] = []
        since: dict[int, list[str]] = {}
        with self._lock:
            generation = self._counts_generation
            for room_id in room_ids:
                hit = self._counts.get((user_id, room_id))
                if hit is None or hit[0] > upto:
                    fresh.append(room_id)
                elif hit[0] == upto:
                    out[room_id] = hit[1]
                else:
                    since.setdefault(hit[0], []).append(room_id)
                    out[room_id] = hit[1]
        if fresh:
            counted = store.unread_counts(txn, user_id, fresh, -1, upto)
            out.update({r: counted.get(r, {}) for r in fresh})
        for after, rooms in since.items():
            delta = store.unread_counts(txn, user_id, rooms, after, upto)
            for room_id in rooms:
                merged = dict(out[room_id])
                for thread, (n, h) in delta.get(room_id, {}).items():
                    n0, h0 = merged.get(thread, (0, 0))
                    merged[thread] = (n0 + n, h0 + h)
                out[room_id] = merged
        with self._lock:
            if generation == self._counts_generation:
                for room_id in room_ids:
                    self._counts[(user_id, room_id)] = (upto, out[room_id])
                    self._counts.move_to_end((user_id, room_id))
                while len(self._counts) > self._CACHE_MAX:
                    self._counts.popitem(last=False)
        return out

    # --- evaluation -------------------------------------------------------------------------
    def _evaluators_for(
        self, txn: Txn, user_ids: list[str]
    ) -> dict[str, tuple[rules_core.PushEvaluator, bool]]:
        out: dict[str, tuple[rules_core.PushEvaluator, bool]] = {}
        missing: list[str] = []
        with self._lock:
            generation = self._generation
            for uid in user_ids:
                ev = self._evaluators.get(uid)
                if ev is None:
                    missing.append(uid)
                else:
                    out[uid] = ev
        if missing:
            docs = store.get_many_user_rules(txn, missing)
            built = {}
            for uid in missing:
                doc = docs.get(uid, store.EMPTY_RULES)
                built[uid] = (rules_core.PushEvaluator(effective_ruleset(uid, doc)),
                              not any(doc.get(k) for k in ("rules", "enabled", "actions")))
            out.update(built)
            with self._lock:
                if generation != self._generation:
                    return out
                self._evaluators.update(built)
                while len(self._evaluators) > self._CACHE_MAX:
                    self._evaluators.popitem(last=False)
        return out

    def _custom_members(self, txn: Txn, room_id: str, members: dict[str, str | None]) -> set[str]:
        """The members whose push rules are not the server default, remembered per room for as
        long as its member list (the same cached dict) and everyone's rules stay the same."""
        with self._lock:
            generation = self._generation
            hit = self._custom.get(room_id)
            if hit is not None and hit[0] == generation and hit[1] is members:
                return hit[2]
        evaluators = self._evaluators_for(txn, list(members))
        custom = {u for u, (_, default) in evaluators.items() if not default}
        with self._lock:
            if generation == self._generation:
                self._custom[room_id] = (generation, members, custom)
                self._custom.move_to_end(room_id)
                while len(self._custom) > 5_000:
                    self._custom.popitem(last=False)
        return custom

    def _room_members(self, txn: Txn, room_id: str, cache: bool = True) -> dict[str, str | None]:
        with self._lock:
            members = self._members.get(room_id) if cache else None
        if members is None:
            members = {}
            for uid, content in store.joined_members_with_events(txn, room_id):
                name = content.get("displayname")
                members[uid] = name if isinstance(name, str) else None
            if not cache:
                return members
            with self._lock:
                self._members[room_id] = members
                while len(self._members) > 5_000:
                    self._members.popitem(last=False)
        return members

    def forget_room(self, room_id: str) -> None:
        with self._lock:
            self._members.pop(room_id, None)

    def on_event_persisted(
        self, txn: Txn, event: dict[str, Any], pos: int, rv: RoomVersion | None = None,
        state: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> dict[str, str | None]:
        """Record what the event does to members' unread counts (in the persisting txn);
        returns the room's joined members (user ID -> display name) after it.

        Members with the server-default rules who are not named in the event all get the
        same actions (the default rules depend on the user only through their user ID
        appearing in the event), so those are evaluated once and stored once per event;
        only members whose actions differ get a row of their own. A send to a big room
        costs one rule walk and one row, not one of each per member.
        """
        room_id, sender, event_id = event["room_id"], event["sender"], event["event_id"]
        is_member = event["type"] == "m.room.member"
        if is_member:
            # Membership changed in this (uncommitted) transaction: don't cache it.
            self.forget_room(room_id)
            txn.call_after(lambda: self.forget_room(room_id))
            was = (event.get("unsigned") or {}).get("prev_content", {}).get("membership")
            if event["content"].get("membership") == "join" and was != "join":
                # Nothing before the join is unread for the new member.
                self.mark_read(txn, event["state_key"], room_id, pos, None)
        members = self._room_members(txn, room_id, cache=not is_member)
        thread_id = event_store.thread_id_of(txn, event)
        if sender in members and sender.endswith(":" + self.hs.server_name):
            # Sending in a room reads it: the sender has seen what came before (counts are
            # kept for this server's users only).
            self.mark_read(txn, sender, room_id, pos, thread_id or "main")
        invitee = event.get("state_key") if is_member else None
        if not (invitee is not None and invitee not in members
                and event["content"].get("membership") == "invite"
                and invitee.endswith(f":{self.hs.server_name}")):
            invitee = None  # else: not in the room yet, but the invite is for them
        # Every joined member but the sender, and an invitee (.m.rule.invite_for_me): tested
        # for, never listed, so a send to a big room does not walk its members.
        count = len(members) - (sender in members) + (invitee is not None)
        if not count:
            return members

        def is_recipient(uid: str) -> bool:
            return uid != sender and (uid in members or uid == invitee)
        if state is None:  # the room's state after the event; the pipeline passes its auth state
            state = event_store.get_current_state(
                txn, room_id, [("m.room.power_levels", ""), ("m.room.create", "")]
            )
        pl = state.get(("m.room.power_levels", ""), {}).get("content") or {}
        sender_level = _sender_level(txn, room_id, sender, state, rv)
        # The default rules read a user ID only as a whole value (m.mentions, a member's
        # state_key): members named so, and those with rules of their own, are evaluated
        # one by one; everyone else shares one evaluation.
        own = [u for u in dict.fromkeys(
            [*self._custom_members(txn, room_id, members), *_string_values(event)])
            if is_recipient(u)]
        own_set = set(own)
        representative = None
        if len(own) < count:
            representative = next(u for u in members if is_recipient(u) and u not in own_set)
        evaluators = self._evaluators_for(
            txn, [*own, *([representative] if representative else [])])

        def actions_for(uid: str) -> list[Any]:
            if uid not in evaluators:
                evaluators.update(self._evaluators_for(txn, [uid]))
            return evaluators[uid][0].evaluate(
                event, user_id=uid, display_name=members.get(uid), room_member_count=len(members),
                power_levels=pl, sender_power_level=sender_level,
            )

        def outcome(uid: str) -> tuple[int, int]:
            actions = actions_for(uid)
            return (int(rules_core.actions_notify(actions)),
                    int(rules_core.actions_highlight(actions)))

        shared = (0, 0)
        if representative is not None:
            shared = outcome(representative)
            if shared != (0, 0):
                store.add_room_push_action(txn, room_id, pos, sender, thread_id, *shared)
        rows = []
        for uid in own:
            mine = outcome(uid)
            if mine != shared:
                rows.append((uid, room_id, pos, event_id, thread_id, *mine))
        if rows:
            store.add_push_actions(txn, rows)
        if self.hs.config.push.enabled:
            candidates = [u for u in self.hs.pushers.users_among(members) if is_recipient(u)]
            if invitee is not None and self.hs.pushers.wants_push(invitee):
                candidates.append(invitee)
            notify_pushers(self.hs, txn, candidates, event, pos, actions_for, members.get(sender))
        return members


def _string_values(event: dict[str, Any]) -> set[str]:
    """The strings of the event's content and its state_key: the places the default rules
    read a user ID from (not its graph's IDs, hashes and signatures)."""
    found: set[str] = set()
    stack: list[Any] = [event.get("content"), event.get("state_key")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _is_default(user_id: str, kind: str, rule_id: str) -> bool:
    return rules_core.is_server_default_rule_id(kind, rule_id)


def _sender_level(
    txn: Txn, room_id: str, sender: str, state: dict[tuple[str, str], dict[str, Any]],
    rv: RoomVersion | None,
) -> Any:
    if rv is None:
        ident = event_store.get_room_version(txn, room_id)
        rv = KNOWN_ROOM_VERSIONS.get(ident) if ident else None
    if rv is not None:
        return get_user_power_level(sender, state, rv)
    pl = state.get(("m.room.power_levels", ""), {}).get("content") or {}
    users = pl.get("users")
    level = (users if isinstance(users, dict) else {}).get(sender, pl.get("users_default", 0))
    return level if isinstance(level, int) else 0
