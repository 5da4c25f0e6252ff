"""Real-client integration scenario driven by matrix-nio's AsyncClient over real HTTP.

    state = await run_chat(base_url)      # register, chat, edit, redact, react, thread, typing, receipts
    await run_verify(base_url, state)     # new logins (e.g. after a restart): history intact, then a leave

Every failure raises ScenarioError (an AssertionError) with a reason. Every wait is bounded.
Runnable by hand too: ``python nio_scenario.py http://127.0.0.1:8448``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nio import (
    AsyncClient,
    AsyncClientConfig,
    FullyReadEvent,
    InviteInfo,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetEventResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMessagesResponse,
    RoomPreset,
    RoomReadMarkersResponse,
    RoomRedactResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
    UploadFilterResponse,
    WhoamiResponse,
)
from nio.api import Api

N_MESSAGES = 100
WAIT_S = 30.0
T = TypeVar("T")


class ScenarioError(AssertionError):
    pass


def check(cond: Any, msg: str) -> None:
    if not cond:
        raise ScenarioError(msg)


def _log(msg: str) -> None:
    print(f"[nio-scenario {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def call(what: str, aw: Awaitable[Any], expect: type[T], timeout: float = WAIT_S) -> T:
    """Await a nio call with a timeout and insist on the expected response type."""
    try:
        resp = await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise ScenarioError(f"{what}: no answer within {timeout} s") from None
    if not isinstance(resp, expect):
        detail = getattr(resp, "message", None) or resp
        status = getattr(resp, "status_code", None)
        raise ScenarioError(f"{what}: expected {expect.__name__}, got {type(resp).__name__} {status or ''} {detail}")
    return resp


async def wait_for(what: str, pred: Callable[[], Any], timeout: float = WAIT_S,
                   detail: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = f" [{detail()}]" if detail else ""
            raise ScenarioError(f"timed out after {timeout} s waiting for: {what}{extra}")
        await asyncio.sleep(0.05)


def new_client(base_url: str, user: str = "") -> AsyncClient:
    cfg = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False,
                            request_timeout=WAIT_S + 30, max_timeouts=1, max_limit_exceeded=0)
    return AsyncClient(base_url, user, config=cfg)


# ---------------------------------------------------------------- sync recorder
class SyncLoop:
    """Runs /sync in the background and records what arrives, per room."""

    def __init__(self, client: AsyncClient, sync_filter: str | dict[str, Any]) -> None:
        self.client = client
        self.filter = sync_filter
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.limited: dict[str, int] = {}
        self.typing: dict[str, list[list[str]]] = {}
        self.receipts: dict[str, list[tuple[str, str, str]]] = {}  # room -> (event_id, type, user)
        self.account_data: dict[str, list[dict[str, Any]]] = {}
        self.invites: set[str] = set()
        self.left: set[str] = set()
        self.error: str | None = None
        self.syncs = 0
        self.initial_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def initial(self) -> None:
        try:
            await asyncio.wait_for(self.initial_done.wait(), WAIT_S)
        except TimeoutError:
            raise ScenarioError(f"initial sync for {self.client.user_id} did not finish: {self.error}") from None
        check(self.error is None, f"initial sync for {self.client.user_id} failed: {self.error}")

    async def _run(self) -> None:
        first = True
        while True:
            try:
                resp = await asyncio.wait_for(
                    self.client.sync(timeout=0 if first else 10_000, sync_filter=self.filter), WAIT_S + 15)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - record and stop; waits will report it
                self.error = f"{type(e).__name__}: {e}"
                self.initial_done.set()
                return
            if not isinstance(resp, SyncResponse):
                self.error = f"{type(resp).__name__}: {getattr(resp, 'message', resp)} {getattr(resp, 'status_code', '')}"
                self.initial_done.set()
                return
            if not resp.next_batch:
                self.error = "sync response without next_batch"
                self.initial_done.set()
                return
            self.syncs += 1
            self._record(resp)
            first = False
            self.initial_done.set()

    def _record(self, resp: SyncResponse) -> None:
        for room_id, info in resp.rooms.join.items():
            tl = self.timeline.setdefault(room_id, [])
            if info.timeline.limited and tl:
                self.limited[room_id] = self.limited.get(room_id, 0) + 1
            tl.extend(ev.source for ev in info.timeline.events)
            for ev in info.ephemeral:
                if isinstance(ev, TypingNoticeEvent):
                    self.typing.setdefault(room_id, []).append(list(ev.users))
                elif isinstance(ev, ReceiptEvent):
                    self.receipts.setdefault(room_id, []).extend(
                        (r.event_id, r.receipt_type, r.user_id) for r in ev.receipts)
            for ev in info.account_data:
                # nio parses m.fully_read into FullyReadEvent (no raw source kept)
                if isinstance(ev, FullyReadEvent):
                    src = {"type": "m.fully_read", "content": {"event_id": ev.event_id}}
                else:
                    src = getattr(ev, "source", None) or {"type": type(ev).__name__}
                self.account_data.setdefault(room_id, []).append(src)
            self.invites.discard(room_id)
        for room_id, inv in resp.rooms.invite.items():
            if isinstance(inv, InviteInfo):
                self.invites.add(room_id)
        for room_id in resp.rooms.leave:
            self.left.add(room_id)

    def events(self, room_id: str, etype: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.timeline.get(room_id, []) if etype is None or e.get("type") == etype]

    def find(self, room_id: str, event_id: str) -> dict[str, Any] | None:
        for e in self.timeline.get(room_id, []):
            if e.get("event_id") == event_id:
                return e
        return None

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


# ---------------------------------------------------------------- account helpers
async def register(base_url: str, username: str, password: str) -> str:
    c = new_client(base_url)
    try:
        # Step 1: no auth at all -> 401 with a UIA session and the flows.
        path = Api._build_path(["register"])
        body = json.dumps({"username": username, "password": password,
                           "initial_device_display_name": "scenario-nio"})
        raw = await asyncio.wait_for(c.send("POST", path, body, {"Content-Type": "application/json"}), WAIT_S)
        status = raw.status
        challenge = await raw.json(content_type=None)
        check(status == 401, f"POST /register without auth: expected 401, got {status} {challenge}")
        session = challenge.get("session")
        check(isinstance(session, str) and session, f"401 from /register has no session: {challenge}")
        flows = challenge.get("flows") or []
        check(any(f.get("stages") == ["m.login.dummy"] for f in flows),
              f"/register does not offer an m.login.dummy-only flow: {flows}")
        # Step 2: complete the dummy stage with the session.
        resp = await call(f"register {username}",
                          c.register(username, password, device_name="scenario-nio", session_token=session),
                          RegisterResponse)
        check(resp.user_id.startswith(f"@{username}:"), f"register gave user_id {resp.user_id}")
        check(resp.access_token and resp.device_id, "register response lacks access_token/device_id")
        return resp.user_id
    finally:
        await c.close()


async def login(base_url: str, username: str, password: str, user_id: str) -> AsyncClient:
    c = new_client(base_url, username)
    try:
        resp = await call(f"login {username}", c.login(password, device_name="scenario-nio-login"), LoginResponse)
        check(resp.user_id == user_id, f"login gave user_id {resp.user_id}, expected {user_id}")
        check(c.access_token and c.device_id, "login did not set access_token/device_id")
        who = await call(f"whoami {username}", c.whoami(), WhoamiResponse)
        check(who.user_id == user_id, f"whoami says {who.user_id}, expected {user_id}")
    except BaseException:
        await c.close()
        raise
    return c


async def paginate_to_create(client: AsyncClient, room_id: str, from_token: str) -> list[dict[str, Any]]:
    """Back-paginate /messages from `from_token` until m.room.create. Returns newest-first events."""
    out: list[dict[str, Any]] = []
    token = from_token
    for page in range(60):
        resp = await call(f"room_messages page {page}",
                          client.room_messages(room_id, start=token, direction=MessageDirection.back, limit=20),
                          RoomMessagesResponse)
        out.extend(ev.source for ev in resp.chunk)
        if any(e.get("type") == "m.room.create" for e in out):
            break
        if not resp.end or not resp.chunk:
            break
        check(resp.end != token, "/messages returned end == from (no progress)")
        token = resp.end
    check(any(e.get("type") == "m.room.create" for e in out),
          f"back-pagination stopped after {len(out)} events without reaching m.room.create")
    check(out[-1].get("type") == "m.room.create", "m.room.create is not the oldest event reached")
    return out


def _rel(ev: dict[str, Any]) -> dict[str, Any]:
    return (ev.get("content") or {}).get("m.relates_to") or {}


# ---------------------------------------------------------------- chat
async def run_chat(base_url: str) -> dict[str, Any]:
    base_url = base_url.rstrip("/")
    r = secrets.token_hex(4)
    alice_name, bob_name = f"alice_{r}", f"bob_{r}"
    alice_pw, bob_pw = f"pw-a-{secrets.token_hex(8)}", f"pw-b-{secrets.token_hex(8)}"
    tag = f"nio-{r}"

    _log(f"registering {alice_name}, {bob_name}")
    alice_id = await register(base_url, alice_name, alice_pw)
    bob_id = await register(base_url, bob_name, bob_pw)

    # A wrong password must be refused.
    c = new_client(base_url, alice_name)
    try:
        bad = await asyncio.wait_for(c.login("definitely-wrong"), WAIT_S)
        check(not isinstance(bad, LoginResponse), "login with a wrong password succeeded")
        check(getattr(bad, "status_code", None) == "M_FORBIDDEN",
              f"wrong password: expected M_FORBIDDEN, got {getattr(bad, 'status_code', None)} {bad}")
    finally:
        await c.close()

    alice = await login(base_url, alice_name, alice_pw, alice_id)
    try:
        bob = await login(base_url, bob_name, bob_pw, bob_id)
    except BaseException:
        await alice.close()
        raise
    loops: list[SyncLoop] = []
    try:
        # alice uses an uploaded filter, bob an inline one; both allow big timelines so a burst
        # of messages does not legitimately come back `limited`.
        room_filter = {"timeline": {"limit": N_MESSAGES + 50}}
        fres = await call("upload_filter", alice.upload_filter(room=room_filter), UploadFilterResponse)
        check(fres.filter_id, "upload_filter returned no filter_id")
        a_sync = SyncLoop(alice, fres.filter_id)
        b_sync = SyncLoop(bob, {"room": room_filter})
        loops = [a_sync, b_sync]
        for lp in loops:
            lp.start()
        for lp in loops:
            await lp.initial()

        room_name = f"nio scenario {r}"
        cr = await call("room_create", alice.room_create(name=room_name, topic="nio scenario",
                                                         preset=RoomPreset.private_chat), RoomCreateResponse)
        room_id = cr.room_id
        check(room_id.startswith("!"), f"room_create gave {room_id}")
        _log(f"room {room_id}")
        await wait_for("alice sees her room's m.room.create and name in sync", lambda: a_sync.events(room_id, "m.room.create")
                       and any(e["content"].get("name") == room_name for e in a_sync.events(room_id, "m.room.name")))

        await call("room_invite", alice.room_invite(room_id, bob_id), RoomInviteResponse)
        await wait_for("bob sees the invite in sync", lambda: room_id in b_sync.invites)
        jr = await call("join", bob.join(room_id), JoinResponse)
        check(jr.room_id == room_id, f"join returned room_id {jr.room_id}")

        def member_is(lp: SyncLoop, uid: str, membership: str) -> bool:
            ms = [e for e in lp.events(room_id, "m.room.member") if e.get("state_key") == uid]
            return bool(ms) and ms[-1]["content"].get("membership") == membership

        await wait_for("alice sees bob join", lambda: member_is(a_sync, bob_id, "join"))
        await wait_for("bob sees his own join in sync", lambda: member_is(b_sync, bob_id, "join"))

        # ---- 100 messages alternating; each send completes before the next one starts.
        _log(f"sending {N_MESSAGES} messages")
        expected: list[dict[str, str]] = []
        for i in range(N_MESSAGES):
            sender, who = (alice, "alice") if i % 2 == 0 else (bob, "bob")
            body = f"{tag} msg {i:03d} from {who}"
            sr = await call(f"room_send {i}", sender.room_send(room_id, "m.room.message",
                                                               {"msgtype": "m.text", "body": body}),
                            RoomSendResponse)
            check(sr.event_id.startswith("$"), f"send {i} gave event_id {sr.event_id}")
            check(all(m["id"] != sr.event_id for m in expected), f"send {i} returned a duplicate event_id")
            expected.append({"id": sr.event_id, "body": body, "sender": sender.user_id})

        def ours(lp: SyncLoop) -> list[dict[str, Any]]:
            return [e for e in lp.events(room_id, "m.room.message")
                    if str(e["content"].get("body", "")).startswith(f"{tag} msg ") and not _rel(e)]

        for lp in loops:
            uid = lp.client.user_id
            await wait_for(f"{uid} sees all {N_MESSAGES} messages via sync", lambda lp=lp: len(ours(lp)) >= N_MESSAGES,
                           detail=lambda lp=lp: f"saw {len(ours(lp))}")
            got = ours(lp)
            check(len(got) == N_MESSAGES, f"{uid} saw {len(got)} scenario messages, expected {N_MESSAGES} (duplicates?)")
            for i, (ev, exp) in enumerate(zip(got, expected, strict=True)):
                check(ev["event_id"] == exp["id"] and ev["content"]["body"] == exp["body"] and ev["sender"] == exp["sender"],
                      f"{uid}: sync position {i} is {ev['event_id']} {ev['content'].get('body')!r} from {ev['sender']}, "
                      f"expected {exp['id']} {exp['body']!r} from {exp['sender']}")
            check(not lp.limited.get(room_id), f"{uid}'s sync came back limited {lp.limited.get(room_id)} time(s)")
        _log("both sides saw all messages in order")

        # ---- edit
        edit_target = expected[10]
        new_body = f"{tag} edited body of message 010"
        er = await call("send edit", alice.room_send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": f"* {new_body}",
            "m.new_content": {"msgtype": "m.text", "body": new_body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": edit_target["id"]},
        }), RoomSendResponse)
        edit_id = er.event_id

        def bob_has_edit() -> bool:
            ev = b_sync.find(room_id, edit_id)
            return bool(ev) and _rel(ev) == {"rel_type": "m.replace", "event_id": edit_target["id"]} \
                and ev["content"].get("m.new_content", {}).get("body") == new_body and ev["sender"] == alice_id

        await wait_for("bob sees alice's edit in sync", bob_has_edit)

        # ---- redaction
        red_target = expected[20]
        rr = await call("room_redact", alice.room_redact(room_id, red_target["id"], reason="scenario"), RoomRedactResponse)
        redaction_id = rr.event_id

        def bob_has_redaction() -> bool:
            ev = b_sync.find(room_id, redaction_id)
            if not ev or ev.get("type") != "m.room.redaction":
                return False
            return (ev.get("redacts") or ev.get("content", {}).get("redacts")) == red_target["id"]

        await wait_for("bob sees the redaction in sync", bob_has_redaction)
        ge = await call("room_get_event (redacted)", bob.room_get_event(room_id, red_target["id"]), RoomGetEventResponse)
        src = ge.event.source
        check("body" not in src.get("content", {}), f"redacted event still has a body for bob: {src}")
        check((src.get("unsigned") or {}).get("redacted_because", {}).get("event_id") == redaction_id,
              f"redacted event lacks unsigned.redacted_because pointing at {redaction_id}: {src.get('unsigned')}")
        _log("edit and redaction seen by bob")

        # ---- reaction (bob -> alice's message 30)
        react_target = expected[30]
        key = "👍"
        rx = await call("send reaction", bob.room_send(room_id, "m.reaction", {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": react_target["id"], "key": key}}),
            RoomSendResponse)
        reaction_id = rx.event_id
        await wait_for("alice sees bob's reaction in sync", lambda: (ev := a_sync.find(room_id, reaction_id)) is not None
                       and ev["type"] == "m.reaction" and ev["sender"] == bob_id
                       and _rel(ev) == {"rel_type": "m.annotation", "event_id": react_target["id"], "key": key})

        # ---- thread reply (bob, rooted at alice's message 40)
        root = expected[40]
        thread_body = f"{tag} thread reply from bob"
        tr = await call("send thread reply", bob.room_send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": thread_body,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root["id"], "is_falling_back": True,
                             "m.in_reply_to": {"event_id": root["id"]}}}), RoomSendResponse)
        thread_id = tr.event_id
        await wait_for("alice sees bob's thread reply in sync", lambda: (ev := a_sync.find(room_id, thread_id)) is not None
                       and ev["content"].get("body") == thread_body and _rel(ev).get("rel_type") == "m.thread"
                       and _rel(ev).get("event_id") == root["id"])
        _log("reaction and thread reply seen by alice")

        # ---- typing (alice -> bob, via sync ephemeral m.typing)
        check(not any(alice_id in u for u in b_sync.typing.get(room_id, [])), "alice shown typing before she typed")
        await call("room_typing on", alice.room_typing(room_id, True, 30_000), RoomTypingResponse)
        await wait_for("bob's sync has m.typing with alice", lambda: any(alice_id in u for u in b_sync.typing.get(room_id, [])),
                       detail=lambda: f"typing seen: {b_sync.typing.get(room_id)}")
        n_before = len(b_sync.typing.get(room_id, []))
        await call("room_typing off", alice.room_typing(room_id, False), RoomTypingResponse)
        await wait_for("bob's sync has m.typing without alice", lambda: any(
            alice_id not in u for u in b_sync.typing.get(room_id, [])[n_before:]),
            detail=lambda: f"typing seen: {b_sync.typing.get(room_id)}")
        _log("typing seen by bob")

        # ---- receipts (bob -> alice, via sync ephemeral m.receipt)
        rc1 = expected[N_MESSAGES - 4]
        await call("update_receipt_marker", bob.update_receipt_marker(room_id, rc1["id"]), UpdateReceiptMarkerResponse)
        await wait_for("alice's sync has bob's m.read receipt (update_receipt_marker)",
                       lambda: (rc1["id"], "m.read", bob_id) in a_sync.receipts.get(room_id, []),
                       detail=lambda: f"receipts: {a_sync.receipts.get(room_id)}")
        rc2 = expected[N_MESSAGES - 2]
        await call("room_read_markers", bob.room_read_markers(room_id, fully_read_event=rc2["id"], read_event=rc2["id"]),
                   RoomReadMarkersResponse)
        await wait_for("alice's sync has bob's m.read receipt (room_read_markers)",
                       lambda: (rc2["id"], "m.read", bob_id) in a_sync.receipts.get(room_id, []),
                       detail=lambda: f"receipts: {a_sync.receipts.get(room_id)}")
        await wait_for("bob's sync has his m.fully_read marker in room account data",
                       lambda: any(e.get("type") == "m.fully_read" and e.get("content", {}).get("event_id") == rc2["id"]
                                   for e in b_sync.account_data.get(room_id, [])),
                       detail=lambda: f"account data: {b_sync.account_data.get(room_id)}")
        check(not any(u == alice_id and t == "m.read" and e == rc2["id"] for e, t, u in a_sync.receipts.get(room_id, [])),
              "a receipt from alice appeared although only bob sent one")
        _log("receipts seen by alice")

        # ---- paginate back to m.room.create from the current sync token
        back = await paginate_to_create(alice, room_id, alice.next_batch)
        _check_history(back, expected, edit_target["id"], edit_id, new_body, red_target["id"], reaction_id, thread_id)
        types = {e["type"] for e in back}
        for t in ("m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name",
                  "m.reaction", "m.room.redaction"):
            check(t in types, f"back-pagination did not include any {t}")
        create_id = back[-1]["event_id"]
        _log(f"back-pagination reached m.room.create after {len(back)} events")

        return {
            "base_url": base_url, "room_id": room_id, "room_name": room_name, "tag": tag,
            "alice": {"user_id": alice_id, "username": alice_name, "password": alice_pw},
            "bob": {"user_id": bob_id, "username": bob_name, "password": bob_pw},
            "create_event_id": create_id,
            "messages": expected,
            "edit": {"target": edit_target["id"], "edit_id": edit_id, "new_body": new_body},
            "redacted": red_target["id"], "redaction_id": redaction_id,
            "reaction": {"id": reaction_id, "target": react_target["id"], "key": key},
            "thread": {"root": root["id"], "reply": thread_id, "body": thread_body},
        }
    finally:
        for lp in loops:
            await lp.stop()
        await alice.close()
        await bob.close()


def _check_history(back: list[dict[str, Any]], expected: list[dict[str, str]], edit_target: str, edit_id: str,
                   new_body: str, redacted: str, reaction_id: str | None, thread_id: str | None) -> None:
    """`back` is newest-first /messages output reaching m.room.create."""
    chron = list(reversed(back))
    pos = {e["event_id"]: i for i, e in enumerate(chron)}
    check(len(pos) == len(chron), "history contains duplicate event IDs")
    last = -1
    for i, m in enumerate(expected):
        check(m["id"] in pos, f"history is missing message {i} ({m['id']})")
        ev = chron[pos[m["id"]]]
        check(pos[m["id"]] > last, f"message {i} is out of order in history")
        last = pos[m["id"]]
        check(ev["sender"] == m["sender"], f"message {i} sender {ev['sender']}, expected {m['sender']}")
        if m["id"] == redacted:
            check("body" not in ev.get("content", {}), f"message {i} should be redacted in history: {ev}")
            check((ev.get("unsigned") or {}).get("redacted_because"), f"redacted message {i} lacks redacted_because")
        else:
            # edits do not change the original event; the edit is its own event (checked below)
            check(ev["content"].get("body") == m["body"], f"message {i} body {ev['content'].get('body')!r}, expected {m['body']!r}")
    check(edit_id in pos, "the edit event is missing from history")
    edit = chron[pos[edit_id]]
    check(_rel(edit) == {"rel_type": "m.replace", "event_id": edit_target}
          and edit["content"].get("m.new_content", {}).get("body") == new_body, f"edit event wrong in history: {edit}")
    check(pos[edit_id] > pos[edit_target], "edit event appears before the event it edits")
    # applying the edit as a client would:
    applied = {m["id"]: m["body"] for m in expected}
    for e in chron:
        rel = _rel(e)
        if rel.get("rel_type") == "m.replace" and e["sender"] == chron[pos[rel["event_id"]]]["sender"]:
            applied[rel["event_id"]] = e["content"]["m.new_content"]["body"]
    check(applied[edit_target] == new_body, "edit did not apply when replaying history")
    if reaction_id:
        check(reaction_id in pos, "reaction missing from history")
    if thread_id:
        check(thread_id in pos, "thread reply missing from history")


# ---------------------------------------------------------------- verify
async def run_verify(base_url: str, state: dict[str, Any]) -> None:
    base_url = base_url.rstrip("/")
    room_id = state["room_id"]
    a, b = state["alice"], state["bob"]
    alice = await login(base_url, a["username"], a["password"], a["user_id"])
    bob: AsyncClient | None = None
    a_sync: SyncLoop | None = None
    try:
        jr = await call("joined_rooms (alice)", alice.joined_rooms(), JoinedRoomsResponse)
        check(room_id in jr.rooms, f"alice's joined_rooms lacks {room_id}: {jr.rooms}")
        jm = await call("joined_members", alice.joined_members(room_id), JoinedMembersResponse)
        ids = sorted(m.user_id for m in jm.members)
        check(ids == sorted([a["user_id"], b["user_id"]]), f"joined members {ids}, expected alice and bob")

        a_sync = SyncLoop(alice, {"room": {"timeline": {"limit": 10}}})
        a_sync.start()
        await a_sync.initial()
        check(room_id in a_sync.timeline, "alice's fresh initial sync does not include the room")
        room = alice.rooms.get(room_id)
        check(room is not None, "nio has no MatrixRoom for the room after initial sync")
        check(room.name == state["room_name"], f"room name {room.name!r}, expected {state['room_name']!r}")

        back = await paginate_to_create(alice, room_id, alice.next_batch)
        check(back[-1]["event_id"] == state["create_event_id"], "m.room.create changed across the restart")
        _check_history(back, state["messages"], state["edit"]["target"], state["edit"]["edit_id"],
                       state["edit"]["new_body"], state["redacted"], state.get("reaction", {}).get("id"),
                       state.get("thread", {}).get("reply"))
        _log(f"history verified ({len(back)} events)")

        bob = await login(base_url, b["username"], b["password"], b["user_id"])
        bjr = await call("joined_rooms (bob)", bob.joined_rooms(), JoinedRoomsResponse)
        check(room_id in bjr.rooms, "bob's joined_rooms lacks the room")
        await call("room_leave", bob.room_leave(room_id), RoomLeaveResponse)

        def bob_left() -> bool:
            ms = [e for e in a_sync.events(room_id, "m.room.member") if e.get("state_key") == b["user_id"]]
            return bool(ms) and ms[-1]["content"].get("membership") == "leave"

        await wait_for("alice sees bob leave in sync", bob_left)
        bjr2 = await call("joined_rooms (bob, after leave)", bob.joined_rooms(), JoinedRoomsResponse)
        check(room_id not in bjr2.rooms, "bob's joined_rooms still lists the room after leaving")
        jm2 = await call("joined_members after leave", alice.joined_members(room_id), JoinedMembersResponse)
        check([m.user_id for m in jm2.members] == [a["user_id"]], f"joined members after leave: {jm2.members}")
        _log("leave verified")
    finally:
        if a_sync:
            await a_sync.stop()
        await alice.close()
        if bob:
            await bob.close()


async def _main(base_url: str) -> None:
    t0 = time.monotonic()
    state = await run_chat(base_url)
    _log(f"chat OK in {time.monotonic() - t0:.1f} s")
    t1 = time.monotonic()
    await run_verify(base_url, state)
    _log(f"verify OK in {time.monotonic() - t1:.1f} s")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8448"))
