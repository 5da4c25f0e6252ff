"""Simplified sliding sync, differentially: the same scripted story on Veche and on Synapse
(the session's, installed from PyPI), each server on its own, and their sliding sync
responses compared once normalised (room and user IDs replaced by the story's names,
positions and timestamps left out).

Where Veche differs from Synapse on purpose, the comparison says so:
- notification_count / highlight_count: Synapse answers 0 always; Veche the true counts,
  as its /sync does (checked against what the story makes them).
- a list whose ranges cover it whole: Synapse leaves it unsorted; Veche sorts every list.
  The story's lists that hold more than one room are cut by their ranges, so Synapse
  sorts them too.
- a room's `timeline` and `required_state`: Synapse leaves them out when empty; Veche sends
  `[]`, as matrix-js-sdk reads both without checking (normalised to `[]` here).
- account_data.rooms: Synapse lists every room of the response, most with `[]`; Veche only
  those with data.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.e2e_helpers import device_keys, device_signing_key, fallback_key, one_time_keys
from tests.federation.peers import SynapsePeer

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
ROLES = ("alice", "bob", "carol")
ROOM_STATE = [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.encryption", ""],
              ["m.room.member", "$ME"]]
EXTENSIONS = {"e2ee": {"enabled": True}, "to_device": {"enabled": True},
              "account_data": {"enabled": True}, "receipts": {"enabled": True},
              "typing": {"enabled": True}}


class Story:
    """One server's run: its clients by role, and room IDs by the story's names."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.clients = {r: Client(http, base_url) for r in ROLES}
        self.rooms: dict[str, str] = {}
        self.txn = 0
        self.orders: dict[str, list[str]] = {}  # the latest order of lists left unsorted

    def names(self) -> dict[str, str]:
        out = {room_id: name for name, room_id in self.rooms.items()}
        out.update({c.user_id: role for role, c in self.clients.items() if c.user_id})
        return out

    async def start(self) -> None:
        for client in self.clients.values():
            await client.register()

    async def call(self, role: str, method: str, path: str, body: Any = None,
                   **kw: Any) -> Any:
        status, resp = await self.clients[role].request(method, path, body, **kw)
        assert status == 200, (role, method, path, status, resp)
        return resp

    async def create(self, role: str, label: str, **body: Any) -> str:
        resp = await self.call(role, "POST", "createRoom", {"preset": "private_chat", **body})
        self.rooms[label] = resp["room_id"]
        return str(resp["room_id"])

    async def join(self, role: str, room: str) -> None:
        await self.call(role, "POST", f"join/{quote(self.rooms[room])}", {})

    async def send(self, role: str, room: str, body: str) -> str:
        self.txn += 1
        resp = await self.call(role, "PUT", f"rooms/{quote(self.rooms[room])}/send/m.room.message/"
                               f"t{self.txn}", {"msgtype": "m.text", "body": body})
        return str(resp["event_id"])

    async def sliding(self, body: dict[str, Any], pos: str | None = None) -> dict[str, Any]:
        params = {"timeout": "3000", "pos": pos} if pos else {}
        resp: dict[str, Any] = await self.call("alice", "POST", PATH, body, params=params)
        return resp

    def user(self, role: str) -> str:
        return str(self.clients[role].user_id)

    async def run(self) -> list[dict[str, Any]]:
        """The story; the sliding sync responses Alice got, normalised."""
        await self.start()
        alice = self.user("alice")
        await self.create("bob", "Named", name="Named", invite=[alice])
        await self.join("alice", "Named")
        for body in ("n1", "n2"):
            await self.send("bob", "Named", body)
        await self.create("carol", "Secret", name="Secret", invite=[alice], initial_state=[{
            "type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        await self.join("alice", "Secret")
        await self.send("carol", "Secret", "s1")
        await self.create("bob", "DM", preset="trusted_private_chat", invite=[alice], is_direct=True)
        await self.join("alice", "DM")
        await self.send("bob", "DM", "d1")
        await self.call("alice", "PUT", f"user/{quote(alice)}/account_data/m.direct",
                        {self.user("bob"): [self.rooms["DM"]]})
        await self.create("bob", "Group", invite=[alice, self.user("carol")])
        await self.join("carol", "Group")
        await self.join("alice", "Group")
        await self.send("carol", "Group", "g1")
        await self.create("carol", "Invite", name="Invite", invite=[alice])
        read = await self.send("bob", "Named", "n3")
        await self.call("alice", "POST", f"rooms/{quote(self.rooms['Named'])}/receipt/m.read/"
                        f"{quote(read)}", {})
        await self.call("alice", "PUT", f"user/{quote(alice)}/rooms/{quote(self.rooms['Named'])}"
                        "/account_data/m.tag", {"tags": {"u.work": {}}})

        key = device_signing_key(self.clients["alice"].device_id)
        await self.call("alice", "POST", "keys/upload", {
            "one_time_keys": one_time_keys(key, alice, 2),
            "fallback_keys": fallback_key(key, alice)})

        lists = {
            "all": {"ranges": [[0, 3]], "timeline_limit": 2, "required_state": ROOM_STATE},
            "dms": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": ROOM_STATE,
                    "filters": {"is_dm": True}},
            "encrypted": {"ranges": [[0, 9]], "timeline_limit": 1,
                          "required_state": ROOM_STATE, "filters": {"is_encrypted": True}},
            "invites": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": ROOM_STATE,
                        "filters": {"is_invite": True}},
        }
        body: dict[str, Any] = {"lists": lists, "extensions": EXTENSIONS}
        out = []
        first = await self.sliding(body)
        out.append(self.normalise(first))
        # A new message moves its room up, and only that room comes, with what is new.
        await self.send("carol", "Group", "g2")
        second = await self.sliding(body, first["pos"])
        out.append(self.normalise(second))
        # A topic change moves a room up too.
        await self.call("bob", "PUT", f"rooms/{quote(self.rooms['DM'])}/state/m.room.topic/",
                        {"topic": "plans"})
        third = await self.sliding(body, second["pos"])
        out.append(self.normalise(third))
        # A subscription asking for more state than the list did.
        sub = copy.deepcopy(body)
        sub["room_subscriptions"] = {self.rooms["Secret"]: {
            "timeline_limit": 3, "required_state": [*ROOM_STATE, ["m.room.create", ""]]}}
        fourth = await self.sliding(sub, third["pos"])
        out.append(self.normalise(fourth))
        # Extensions live: a to-device message, typing, a receipt, account data.
        await self.call("bob", "PUT", "sendToDevice/m.test/t1", {"messages": {
            alice: {self.clients["alice"].device_id: {"hello": "alice"}}}})
        await self.call("bob", "PUT", f"rooms/{quote(self.rooms['Named'])}/typing/"
                        f"{quote(self.user('bob'))}", {"typing": True, "timeout": 30000})
        last = await self.send("bob", "Named", "n4")
        await self.call("bob", "POST", f"rooms/{quote(self.rooms['Named'])}/receipt/m.read/"
                        f"{quote(last)}", {})
        await self.call("alice", "PUT", f"user/{quote(alice)}/account_data/org.example.x", {"a": 1})
        bob_key = device_signing_key(self.clients["bob"].device_id)
        await self.call("bob", "POST", "keys/upload",
                        {"device_keys": device_keys(self.clients["bob"], bob_key)})
        fifth = await self.sliding(sub, fourth["pos"])
        out.append(self.normalise(fifth))
        # Asking for less state, then for more again after the state changed meanwhile.
        narrow = copy.deepcopy(body)
        narrow["lists"]["all"]["required_state"] = [["m.room.member", "$LAZY"]]
        sixth = await self.sliding(narrow, fifth["pos"])
        out.append(self.normalise(sixth))
        await self.call("bob", "PUT", f"rooms/{quote(self.rooms['Named'])}/state/m.room.name/",
                        {"name": "Renamed"})
        seventh = await self.sliding(narrow, sixth["pos"])
        out.append(self.normalise(seventh))
        await self.send("bob", "Named", "n5")
        eighth = await self.sliding(body, seventh["pos"])
        out.append(self.normalise(eighth))
        # Bob kicks Alice out of Group, and she leaves Secret herself: both come once, the
        # kick stays in the list, her own leave goes.
        await self.call("bob", "POST", f"rooms/{quote(self.rooms['Group'])}/kick",
                        {"user_id": alice, "reason": "tidying"})
        await self.call("alice", "POST", f"rooms/{quote(self.rooms['Secret'])}/leave", {})
        ninth = await self.sliding(body, eighth["pos"])
        out.append(self.normalise(ninth))
        await self.send("bob", "Named", "n6")
        tenth = await self.sliding(body, ninth["pos"])
        out.append(self.normalise(tenth))
        return out

    def normalise(self, resp: dict[str, Any]) -> dict[str, Any]:
        names = self.names()

        def n(value: str) -> str:
            return names.get(value, value)

        lists = {}
        for name, lst in resp.get("lists", {}).items():
            in_window = [n(r) for op in lst.get("ops", []) for r in op["room_ids"]]
            # Synapse leaves a list its ranges cover whole unsorted: then the order is not
            # compared (Veche's is checked on its own).
            whole = len(in_window) == lst["count"] and lst["count"] > 1
            lists[name] = {"count": lst["count"], "rooms": sorted(in_window) if whole else in_window}
            if whole:
                self.orders[name] = in_window
        rooms = {}
        for room_id, room in resp["rooms"].items():
            entry: dict[str, Any] = {
                k: room[k] for k in ("name", "initial", "is_dm", "limited", "num_live",
                                     "joined_count", "invited_count",
                                     "unstable_expanded_timeline") if k in room}
            entry["counts"] = (room.get("notification_count"), room.get("highlight_count"))
            entry["bump_stamp"] = "bump_stamp" in room
            entry["prev_batch"] = "prev_batch" in room
            if "heroes" in room:
                entry["heroes"] = [n(h["user_id"]) for h in room["heroes"]]
            entry["timeline"] = [
                (e["type"], n(e["sender"]), e["content"].get("body") or e["content"].get("topic")
                 or e["content"].get("membership")) for e in room.get("timeline", [])]
            entry["required_state"] = sorted((e["type"], n(e["state_key"]))
                                             for e in room.get("required_state", []))
            if "invite_state" in room:
                entry["invite_state"] = sorted((e["type"], n(e.get("state_key", "")))
                                               for e in room["invite_state"])
            rooms[n(room_id)] = entry
        ext = resp.get("extensions", {})
        extensions: dict[str, Any] = {}
        if "to_device" in ext:
            extensions["to_device"] = [(e["type"], n(e["sender"]), e["content"])
                                       for e in ext["to_device"]["events"]]
        if "e2ee" in ext:
            e2ee = ext["e2ee"]
            extensions["e2ee"] = {
                "otk": e2ee.get("device_one_time_keys_count", {}).get("signed_curve25519", 0),
                "fallback": e2ee.get("device_unused_fallback_key_types"),
                "changed": sorted(n(u) for u in e2ee.get("device_lists", {}).get("changed", [])),
            }
        data = ext.get("account_data") or {}
        extensions["account_data"] = {
            "global": sorted(d["type"] for d in data.get("global", [])
                             if d["type"] != "m.push_rules"),
            "rooms": {n(r): sorted(d["type"] for d in v) for r, v in data.get("rooms", {}).items()
                      if v},
        }
        extensions["receipts"] = {
            n(r): sorted((rtype, n(u)) for per_event in ev["content"].values()
                         for rtype, users in per_event.items() for u in users)
            for r, ev in (ext.get("receipts") or {}).get("rooms", {}).items()}
        extensions["typing"] = {n(r): [n(u) for u in ev["content"]["user_ids"]]
                                for r, ev in (ext.get("typing") or {}).get("rooms", {}).items()
                                if ev["content"]["user_ids"]}
        return {"lists": lists, "rooms": rooms, "extensions": extensions}


# The notification counts Alice has, response by response (Synapse answers 0).
TRUE_COUNTS = [
    {"Named": 0, "Secret": 1, "DM": 1, "Group": 1},  # Alice read Named
    {"Group": 2},
    {"DM": 1},
    {"Secret": 1},
    {"Named": 1},
    {},
    {"Named": 1},
    {"Named": 2},
    {},
    {"Named": 3},
]


def _counts_apart(story: list[dict[str, Any]], synapse: bool) -> list[dict[str, Any]]:
    out = []
    for step, resp in enumerate(story):
        for name, room in resp["rooms"].items():
            counts = room.pop("counts")
            if synapse:
                assert counts == (0, 0), (step, name, counts)
            elif name != "Invite":
                assert counts == (TRUE_COUNTS[step].get(name, counts[0]), 0), (step, name, counts)
        out.append(resp)
    return out


def _diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two normalised responses differ, as "path: ours != theirs" lines."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [d for k in sorted(set(ours) | set(theirs), key=str)
                for d in _diff(ours.get(k), theirs.get(k), f"{path}.{k}")]
    return [] if ours == theirs else [f"{path}: Veche {ours!r} != Synapse {theirs!r}"]


async def test_sliding_sync_matches_synapse(
    homeserver: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession
) -> None:
    story = Story(http, homeserver.base_url)
    veche = await story.run()
    theirs = await Story(http, synapse.client_url).run()
    veche = _counts_apart(veche, synapse=False)
    theirs = _counts_apart(theirs, synapse=True)
    for step, (ours, peer) in enumerate(zip(veche, theirs, strict=True)):
        for part in ("lists", "rooms", "extensions"):
            assert ours[part] == peer[part], (step, part, _diff(ours[part], peer[part]))
    # The story did what it says (so the comparison compared something).
    first = veche[0]
    assert first["lists"]["all"] == {"count": 5, "rooms": ["Named", "Invite", "Group", "DM"]}
    assert first["lists"]["dms"]["rooms"] == ["DM"] and first["rooms"]["DM"]["is_dm"] is True
    assert first["rooms"]["Group"]["heroes"] == ["bob", "carol"]
    assert veche[1]["lists"]["all"]["rooms"][0] == "Group" and list(veche[1]["rooms"]) == ["Group"]
    assert veche[2]["lists"]["all"]["rooms"][0] == "DM"
    assert first["extensions"]["e2ee"] == {"otk": 2, "fallback": ["signed_curve25519"],
                                           "changed": []}
    last = veche[4]["extensions"]
    assert last["to_device"] == [("m.test", "bob", {"hello": "alice"})]
    assert last["e2ee"]["changed"] == ["bob"] and last["typing"] == {"Named": ["bob"]}
    assert last["receipts"] == {"Named": [("m.read", "bob")]}
    assert veche[3]["rooms"]["Secret"]["unstable_expanded_timeline"] is True
    assert veche[8]["rooms"]["Group"]["timeline"][-1] == ("m.room.member", "bob", "leave")
    assert "Secret" in veche[8]["rooms"] and "Group" in veche[9]["lists"]["all"]["rooms"]
    assert veche[9]["lists"]["encrypted"]["count"] == 0
    # The last list was whole in its range: Veche sorted it all the same.
    assert story.orders["all"] == ["Named", "Group", "DM", "Invite"]
    # The name changed while not asked for: asked for again, it is sent again.
    assert veche[6]["rooms"]["Named"]["name"] == "Renamed"
    assert ("m.room.name", "") in veche[7]["rooms"]["Named"]["required_state"]
