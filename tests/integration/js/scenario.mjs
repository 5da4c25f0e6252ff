// Real-client integration scenario driven by matrix-js-sdk over real HTTP.
//
//   node scenario.mjs <baseUrl> chat              -> prints one JSON line (the state) on stdout
//   node scenario.mjs <baseUrl> verify [<json>]   -> state from argv or stdin
//
// Exit code 0 on success; on failure a reason goes to stderr and the exit code is 1.
// Set VECHE_JS_HTTP_LOG=/some/file to append "METHOD /path" of every HTTP request made.
//
// stdout carries only the final JSON line: everything the SDK logs is sent to stderr.

import { appendFileSync, readFileSync } from "node:fs";
import { ScenarioError, check, describeError, fail, rand, sleep, within as withinMs } from "./common.mjs";

// The SDK logs through console.*; in Node console.log/info/debug write to stdout.
for (const m of ["log", "info", "debug", "trace"]) console[m] = (...a) => console.error(...a);

const sdk = await import("matrix-js-sdk");
const {
    createClient,
    ClientEvent,
    RoomEvent,
    RoomMemberEvent,
    Direction,
    Filter,
} = sdk;
try {
    const { logger } = await import("matrix-js-sdk/lib/logger.js");
    logger.setLevel(process.env.VECHE_JS_SDK_LOGLEVEL || "error");
} catch {
    /* logger location changed: not fatal, output still goes to stderr */
}

const WAIT_MS = Number(process.env.VECHE_JS_WAIT_MS || 30000);
const OVERALL_MS = Number(process.env.VECHE_JS_OVERALL_MS || 240000);
const N_MESSAGES = Number(process.env.VECHE_JS_MESSAGES || 100); // 100 unless debugging


const started = Date.now();
function note(msg) {
    process.stderr.write(`[scenario +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

const watchdog = setTimeout(() => {
    process.stderr.write(`FAIL: scenario exceeded the overall limit of ${OVERALL_MS} ms\n`);
    process.exit(1);
}, OVERALL_MS);
watchdog.unref();

// ---------------------------------------------------------------- HTTP logging
const httpLog = process.env.VECHE_JS_HTTP_LOG;
const realFetch = globalThis.fetch.bind(globalThis);
async function loggingFetch(input, init) {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const method = (init && init.method) || (input && input.method) || "GET";
    const res = await realFetch(input, init);
    if (httpLog) {
        try {
            appendFileSync(httpLog, `${method} ${url.pathname} ${res.status}\n`);
        } catch {
            /* ignore */
        }
    }
    return res;
}

// ---------------------------------------------------------------- helpers

/** Poll `pred` until it returns a truthy value; fail after `ms` with `what`. */
async function waitFor(what, pred, ms = WAIT_MS, detail = null) {
    const deadline = Date.now() + ms;
    let lastErr;
    for (;;) {
        try {
            const v = await pred();
            if (v) return v;
        } catch (e) {
            lastErr = e;
        }
        if (Date.now() > deadline) {
            fail(
                `timed out after ${ms} ms waiting for: ${what}` +
                    (lastErr ? ` (last error: ${lastErr.message})` : "") +
                    (detail ? ` [${detail()}]` : ""),
            );
        }
        await sleep(50);
    }
}

/** Race a promise against a timeout. */
const within = (what, promise, ms = WAIT_MS) => withinMs(what, promise, ms);

/** Like within(), but an error from the promise itself is passed through untouched. */
async function timeoutOnly(what, promise, ms = WAIT_MS) {
    let t;
    const timeout = new Promise((_, rej) => {
        t = setTimeout(() => rej(new ScenarioError(`timed out after ${ms} ms: ${what}`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(t);
    }
}


function newClient(baseUrl, creds = {}) {
    return createClient({
        baseUrl,
        fetchFn: loggingFetch,
        timelineSupport: true,
        localTimeoutMs: 60000, // no single HTTP request may hang forever
        ...creds,
    });
}

/** UIA registration with m.login.dummy: 401 + session first, then the dummy stage. */
async function register(baseUrl, username, password) {
    const c = newClient(baseUrl);
    // First step without auth: the server must answer 401 with a UIA session.
    let challenge;
    try {
        await timeoutOnly(
            `first POST /register for ${username}`,
            c.registerRequest({ username, password, initial_device_display_name: "scenario-js" }),
        );
        fail(`POST /register without auth for ${username} succeeded; expected a 401 UIA challenge`);
    } catch (e) {
        if (e instanceof ScenarioError) throw e;
        check(e.httpStatus === 401, `POST /register without auth: expected HTTP 401, got ${describeError(e)}`);
        challenge = e.data;
    }
    check(challenge && typeof challenge.session === "string" && challenge.session, `401 from /register has no session: ${JSON.stringify(challenge)}`);
    const flows = challenge.flows || [];
    check(
        flows.some((f) => Array.isArray(f.stages) && f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
        `401 from /register does not offer a flow with only m.login.dummy: ${JSON.stringify(flows)}`,
    );
    const session = challenge.session;
    const res = await within(
        `POST /register with m.login.dummy for ${username}`,
        c.registerRequest({
            username,
            password,
            initial_device_display_name: "scenario-js",
            auth: { type: "m.login.dummy", session },
        }),
    );
    check(typeof res.user_id === "string" && res.user_id.startsWith(`@${username}:`), `register returned bad user_id: ${JSON.stringify(res)}`);
    check(typeof res.access_token === "string" && res.access_token, `register returned no access_token`);
    check(typeof res.device_id === "string" && res.device_id, `register returned no device_id`);
    return res.user_id;
}

async function login(baseUrl, username, password, expectedUserId) {
    const c = newClient(baseUrl);
    const res = await within(
        `POST /login for ${username}`,
        c.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: username },
            password,
            initial_device_display_name: "scenario-js-login",
        }),
    );
    check(res.user_id === expectedUserId, `login returned user_id ${res.user_id}, expected ${expectedUserId}`);
    check(res.access_token && res.device_id, `login response lacks access_token/device_id: ${JSON.stringify(res)}`);
    c.stopClient();
    const client = newClient(baseUrl, {
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
    });
    const who = await within(`GET /account/whoami for ${username}`, client.whoami());
    check(who.user_id === expectedUserId, `whoami says ${who.user_id}, expected ${expectedUserId}`);
    return client;
}

async function startSync(client) {
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(ClientEvent.Sync, onSync);
                reject(new ScenarioError(`sync error for ${client.getUserId()}: ${describeError(data && data.error)}`));
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    // A bigger timeline limit for incremental syncs means a quick burst of messages is
    // not legitimately cut by a `limited` gap (which would reset the live timeline).
    const filter = new Filter(client.getUserId());
    filter.setTimelineLimit(N_MESSAGES + 50);
    await client.startClient({ initialSyncLimit: 10, pendingEventOrdering: "detached", filter });
    await within(`initial sync (PREPARED) for ${client.getUserId()}`, prepared);
}

function liveEvents(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return [];
    return room.getLiveTimeline().getEvents();
}

function isOurMessage(ev, tag) {
    const c = ev.getContent() || {};
    const orig = ev.getOriginalContent ? ev.getOriginalContent() : c;
    return (
        ev.getType() === "m.room.message" &&
        typeof orig.body === "string" &&
        orig.body.startsWith(`${tag} msg `) &&
        !(ev.getWireContent()["m.relates_to"] || {}).rel_type
    );
}

function stopAll(...clients) {
    for (const c of clients) {
        try {
            c.stopClient();
        } catch {
            /* ignore */
        }
    }
}

// ---------------------------------------------------------------- phase chat
async function phaseChat(baseUrl) {
    const r = rand();
    const aliceName = `alice_${r}`;
    const bobName = `bob_${r}`;
    const alicePw = `pw-a-${rand()}${rand()}`;
    const bobPw = `pw-b-${rand()}${rand()}`;
    const tag = `run-${r}`;

    note(`registering ${aliceName} and ${bobName}`);
    const aliceId = await register(baseUrl, aliceName, alicePw);
    const bobId = await register(baseUrl, bobName, bobPw);

    // A wrong password must be refused (guards against a server that accepts anything).
    {
        const c = newClient(baseUrl);
        try {
            await c.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: aliceName }, password: "wrong" });
            fail("login with a wrong password succeeded");
        } catch (e) {
            if (e instanceof ScenarioError) throw e;
            check(e.httpStatus === 403 && e.errcode === "M_FORBIDDEN", `wrong password: expected 403 M_FORBIDDEN, got ${describeError(e)}`);
        }
    }

    const alice = await login(baseUrl, aliceName, alicePw, aliceId);
    const bob = await login(baseUrl, bobName, bobPw, bobId);
    try {
        note("starting sync for both");
        await startSync(alice);
        await startSync(bob);

        // ---- room
        const roomName = `Scenario room ${r}`;
        const { room_id: roomId } = await within(
            "createRoom",
            alice.createRoom({ preset: "private_chat", name: roomName, topic: "js-sdk scenario" }),
        );
        check(typeof roomId === "string" && roomId.startsWith("!"), `createRoom gave bad room_id ${roomId}`);
        note(`room ${roomId}`);
        await waitFor("alice sees her new room with its name via sync", () => {
            const room = alice.getRoom(roomId);
            return room && room.getMyMembership() === "join" && room.name === roomName;
        });

        await within("invite bob", alice.invite(roomId, bobId));
        await waitFor("bob sees the invite via sync", () => {
            const room = bob.getRoom(roomId);
            return room && room.getMyMembership() === "invite";
        });
        await within("bob joins", bob.joinRoom(roomId));
        await waitFor("bob's membership is join in bob's client", () => bob.getRoom(roomId)?.getMyMembership() === "join");
        await waitFor("alice sees bob joined", () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join");
        await waitFor("bob sees the room name", () => bob.getRoom(roomId)?.name === roomName);

        // Watch for timeline resets (a reset would hide part of the conversation).
        const resets = { [aliceId]: 0, [bobId]: 0 };
        for (const c of [alice, bob]) {
            c.on(RoomEvent.TimelineReset, (room) => {
                if (room && room.roomId === roomId) resets[c.getUserId()]++;
            });
        }

        // ---- 100 messages, alternating, each send completes before the next one starts.
        note(`sending ${N_MESSAGES} messages`);
        const expected = [];
        const sentIds = [];
        for (let i = 0; i < N_MESSAGES; i++) {
            const sender = i % 2 === 0 ? alice : bob;
            const body = `${tag} msg ${String(i).padStart(3, "0")} from ${i % 2 === 0 ? "alice" : "bob"}`;
            const res = await within(`send message ${i}`, sender.sendMessage(roomId, { msgtype: "m.text", body }));
            check(res && typeof res.event_id === "string" && res.event_id.startsWith("$"), `send ${i} returned bad event_id ${JSON.stringify(res)}`);
            check(!sentIds.includes(res.event_id), `send ${i} returned a duplicate event_id ${res.event_id}`);
            expected.push({ body, sender: sender.getUserId(), id: res.event_id });
            sentIds.push(res.event_id);
        }
        for (const c of [alice, bob]) {
            const who = c.getUserId();
            await waitFor(`${who} sees all ${N_MESSAGES} messages in its live timeline`, () => {
                const mine = liveEvents(c, roomId).filter((ev) => isOurMessage(ev, tag));
                return mine.length >= N_MESSAGES;
            });
            const mine = liveEvents(c, roomId).filter((ev) => isOurMessage(ev, tag));
            check(mine.length === N_MESSAGES, `${who} has ${mine.length} scenario messages in its live timeline, expected ${N_MESSAGES}`);
            for (let i = 0; i < N_MESSAGES; i++) {
                const ev = mine[i];
                check(
                    ev.getId() === expected[i].id && ev.getContent().body === expected[i].body && ev.getSender() === expected[i].sender,
                    `${who}: live timeline position ${i} is ${ev.getId()} "${ev.getContent().body}" from ${ev.getSender()}, ` +
                        `expected ${expected[i].id} "${expected[i].body}" from ${expected[i].sender}`,
                );
            }
            check(resets[who] === 0, `${who}'s live timeline was reset ${resets[who]} time(s) during the burst`);
        }
        note("both sides saw all messages in order");

        // ---- edit (alice edits her message 10)
        const editTarget = expected[10];
        check(editTarget.sender === aliceId, "internal: message 10 should be alice's");
        const newBody = `${tag} edited body of message 010`;
        const editRes = await within(
            "send edit",
            alice.sendEvent(roomId, "m.room.message", {
                msgtype: "m.text",
                body: `* ${newBody}`,
                "m.new_content": { msgtype: "m.text", body: newBody },
                "m.relates_to": { rel_type: "m.replace", event_id: editTarget.id },
            }),
        );
        const editId = editRes.event_id;
        await waitFor("bob sees the edit applied to message 10", () => {
            const room = bob.getRoom(roomId);
            const orig = room?.findEventById(editTarget.id);
            return orig && orig.replacingEventId() === editId && orig.getContent().body === newBody;
        });
        note("edit seen by bob");

        // ---- redaction (alice redacts her message 20)
        const redactTarget = expected[20];
        check(redactTarget.sender === aliceId, "internal: message 20 should be alice's");
        const redRes = await within("redact", alice.redactEvent(roomId, redactTarget.id, undefined, { reason: "scenario" }));
        check(redRes && typeof redRes.event_id === "string", `redact returned ${JSON.stringify(redRes)}`);
        await waitFor("bob sees message 20 redacted", () => {
            const ev = bob.getRoom(roomId)?.findEventById(redactTarget.id);
            return ev && ev.isRedacted() && ev.getContent().body === undefined;
        });
        note("redaction seen by bob");

        // ---- reaction (bob reacts to alice's message 30)
        const reactTarget = expected[30];
        const reactKey = "👍";
        const reactRes = await within(
            "send reaction",
            bob.sendEvent(roomId, "m.reaction", {
                "m.relates_to": { rel_type: "m.annotation", event_id: reactTarget.id, key: reactKey },
            }),
        );
        const reactionId = reactRes.event_id;
        await waitFor("alice sees bob's reaction", () => {
            const room = alice.getRoom(roomId);
            const ev = room?.findEventById(reactionId);
            if (!ev || ev.getType() !== "m.reaction" || ev.getSender() !== bobId) return false;
            const rel = ev.getRelation();
            if (!rel || rel.rel_type !== "m.annotation" || rel.event_id !== reactTarget.id || rel.key !== reactKey) return false;
            const rels = room.relations.getChildEventsForEvent(reactTarget.id, "m.annotation", "m.reaction");
            return rels && rels.getRelations().some((e) => e.getId() === reactionId);
        });
        note("reaction seen by alice");

        // ---- thread reply (bob replies in a thread rooted at alice's message 40)
        const threadRoot = expected[40];
        const threadBody = `${tag} thread reply from bob`;
        const threadRes = await within(
            "send thread reply",
            bob.sendEvent(roomId, "m.room.message", {
                msgtype: "m.text",
                body: threadBody,
                "m.relates_to": {
                    rel_type: "m.thread",
                    event_id: threadRoot.id,
                    is_falling_back: true,
                    "m.in_reply_to": { event_id: threadRoot.id },
                },
            }),
        );
        const threadReplyId = threadRes.event_id;
        await waitFor("alice sees bob's thread reply", () => {
            const ev = alice.getRoom(roomId)?.findEventById(threadReplyId);
            if (!ev || ev.getSender() !== bobId || ev.getContent().body !== threadBody) return false;
            const rel = ev.getWireContent()["m.relates_to"] || {};
            return rel.rel_type === "m.thread" && rel.event_id === threadRoot.id;
        });
        // The server-side relations API must list it too.
        const threadRels = await within(
            "GET relations m.thread",
            alice.relations(roomId, threadRoot.id, "m.thread"),
        );
        check(
            threadRels.events.some((e) => e.getId() === threadReplyId),
            `/relations for the thread root does not list the reply; got ${threadRels.events.map((e) => e.getId()).join(",")}`,
        );
        note("thread reply seen by alice");

        // ---- typing (alice -> bob)
        const typingSeen = [];
        const onTyping = (via) => (ev, member) => {
            if (member.roomId === roomId) typingSeen.push({ via, userId: member.userId, typing: member.typing, users: ev.getContent().user_ids });
        };
        // Element listens on the client; with matrix-js-sdk 37 the RoomMember object of a user
        // first seen in invite state is not always re-emitted through the client, so listen on
        // the member object itself as well. Either way it is the SDK's RoomMember.typing event,
        // fired only when an m.typing EDU arrives in /sync.
        bob.on(RoomMemberEvent.Typing, onTyping("client"));
        const aliceMemberOnBob = bob.getRoom(roomId).getMember(aliceId);
        check(aliceMemberOnBob, "bob's client has no RoomMember for alice");
        check(!aliceMemberOnBob.typing, "alice already shown as typing before she typed");
        aliceMemberOnBob.on(RoomMemberEvent.Typing, onTyping("member"));
        await within("alice sends typing", alice.sendTyping(roomId, true, 30000));
        await waitFor(
            "bob gets RoomMember.typing for alice (typing=true)",
            () => typingSeen.some((t) => t.userId === aliceId && t.typing === true),
            WAIT_MS,
            () => `events seen: ${JSON.stringify(typingSeen)}; member.typing=${bob.getRoom(roomId)?.getMember(aliceId)?.typing}`,
        );
        await within("alice stops typing", alice.sendTyping(roomId, false));
        await waitFor("bob gets RoomMember.typing for alice (typing=false)", () =>
            typingSeen.some((t) => t.userId === aliceId && t.typing === false),
        );
        note(`typing seen by bob: ${JSON.stringify(typingSeen.map((t) => [t.via, t.typing]))}`);

        // ---- read receipt (bob -> alice) on message 98 (one of alice's)
        const receiptTarget = expected[N_MESSAGES - 2];
        const bobEv = bob.getRoom(roomId).findEventById(receiptTarget.id);
        check(bobEv, "bob cannot find the receipt target event in his room");
        await within("bob sends read receipt", bob.sendReadReceipt(bobEv));
        await waitFor("alice sees bob's m.read receipt", () => {
            const room = alice.getRoom(roomId);
            return room && room.getEventReadUpTo(bobId, true) === receiptTarget.id;
        });
        note("receipt seen by alice");

        // ---- paginate back to m.room.create with /messages from the current sync token
        const syncToken = alice.store.getSyncToken();
        check(syncToken, "alice has no sync token");
        let from = syncToken;
        const back = [];
        let createEvent = null;
        for (let page = 0; page < 50; page++) {
            const res = await within(`GET /messages page ${page}`, alice.createMessagesRequest(roomId, from, 20, Direction.Backward));
            check(Array.isArray(res.chunk), `/messages returned no chunk: ${JSON.stringify(res).slice(0, 300)}`);
            back.push(...res.chunk);
            createEvent = res.chunk.find((e) => e.type === "m.room.create");
            if (createEvent || !res.end || res.chunk.length === 0) break;
            check(res.end !== from, "/messages returned end == from (no progress)");
            from = res.end;
        }
        check(createEvent, `paginated back ${back.length} events without reaching m.room.create`);
        check(back[back.length - 1].type === "m.room.create", "m.room.create is not the oldest event reached by back-pagination");
        const backMsgs = back.filter((e) => e.type === "m.room.message" && (e.content?.body || "").startsWith(`${tag} msg `)).reverse();
        // message 20 is redacted: its body is gone, so it's matched by id
        const backIds = back.filter((e) => e.type === "m.room.message").map((e) => e.event_id);
        for (const m of expected) {
            check(backIds.includes(m.id), `back-pagination is missing message ${m.body} (${m.id})`);
        }
        check(backMsgs.length === N_MESSAGES - 1, `back-pagination has ${backMsgs.length} unredacted messages with a body, expected ${N_MESSAGES - 1}`);
        const order = back.map((e) => e.event_id).reverse();
        for (let i = 1; i < N_MESSAGES; i++) {
            check(order.indexOf(expected[i - 1].id) < order.indexOf(expected[i].id), `back-pagination order wrong around message ${i}`);
        }
        const seenTypes = new Set(back.map((e) => e.type));
        for (const t of ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name", "m.reaction", "m.room.redaction"]) {
            check(seenTypes.has(t), `back-pagination did not include any ${t} event`);
        }
        note(`back-pagination reached m.room.create after ${back.length} events`);

        const state = {
            base_url: baseUrl,
            room_id: roomId,
            room_name: roomName,
            tag,
            alice: { user_id: aliceId, username: aliceName, password: alicePw },
            bob: { user_id: bobId, username: bobName, password: bobPw },
            create_event_id: createEvent.event_id,
            messages: expected.map((m) => ({ id: m.id, body: m.body, sender: m.sender })),
            edit: { target: editTarget.id, edit_id: editId, new_body: newBody },
            redacted: redactTarget.id,
            reaction: { id: reactionId, target: reactTarget.id, key: reactKey },
            thread: { root: threadRoot.id, reply: threadReplyId, body: threadBody },
            receipt: { user: bobId, event_id: receiptTarget.id },
        };
        return state;
    } finally {
        stopAll(alice, bob);
    }
}

// ---------------------------------------------------------------- phase verify
async function phaseVerify(baseUrl, state) {
    for (const k of ["room_id", "alice", "bob", "messages", "edit", "redacted", "create_event_id"]) {
        check(state && state[k], `state JSON lacks ${k}`);
    }
    const { room_id: roomId, alice: A, bob: B } = state;
    const alice = await login(baseUrl, A.username, A.password, A.user_id);
    let bob;
    try {
        const joined = await within("GET /joined_rooms (alice)", alice.getJoinedRooms());
        check(joined.joined_rooms.includes(roomId), `alice's joined_rooms lacks ${roomId}: ${JSON.stringify(joined)}`);
        const members = await within("GET /joined_members", alice.getJoinedRoomMembers(roomId));
        const memberIds = Object.keys(members.joined || {}).sort();
        check(
            JSON.stringify(memberIds) === JSON.stringify([A.user_id, B.user_id].sort()),
            `joined members are ${JSON.stringify(memberIds)}, expected alice and bob`,
        );

        await startSync(alice);
        const room = await waitFor("alice's new client has the room after initial sync", () => alice.getRoom(roomId));
        check(room.getMyMembership() === "join", `alice's membership is ${room.getMyMembership()}`);
        check(room.name === state.room_name, `room name is "${room.name}", expected "${state.room_name}"`);
        check(room.getMember(B.user_id)?.membership === "join", "bob is not shown as joined in alice's new client");

        // Scroll back the live timeline to the very beginning.
        for (let i = 0; i < 60; i++) {
            if (room.getLiveTimeline().getEvents().some((e) => e.getType() === "m.room.create")) break;
            const before = room.getLiveTimeline().getEvents().length;
            await within(`scrollback #${i}`, alice.scrollback(room, 30));
            const after = room.getLiveTimeline().getEvents().length;
            if (after === before && room.oldState.paginationToken === null) break;
        }
        const evs = room.getLiveTimeline().getEvents();
        const create = evs.find((e) => e.getType() === "m.room.create");
        check(create, `scrollback stopped at ${evs.length} events without reaching m.room.create`);
        check(create.getId() === state.create_event_id, `m.room.create is ${create.getId()}, expected ${state.create_event_id}`);
        check(evs[0].getId() === create.getId(), "m.room.create is not the first event of the timeline after scrollback");

        const byId = new Map(evs.map((e) => [e.getId(), e]));
        let lastIdx = -1;
        for (let i = 0; i < state.messages.length; i++) {
            const m = state.messages[i];
            const ev = byId.get(m.id);
            check(ev, `message ${i} (${m.id}) is missing from history`);
            const idx = evs.indexOf(ev);
            check(idx > lastIdx, `message ${i} is out of order in history`);
            lastIdx = idx;
            check(ev.getSender() === m.sender, `message ${i} sender is ${ev.getSender()}, expected ${m.sender}`);
            if (m.id === state.redacted) {
                check(ev.isRedacted(), `message ${i} should be redacted but is not`);
                check(ev.getContent().body === undefined, `redacted message ${i} still has a body`);
            } else if (m.id === state.edit.target) {
                check(ev.getOriginalContent().body === m.body, `edited message ${i} original body is "${ev.getOriginalContent().body}"`);
                check(
                    ev.replacingEventId() === state.edit.edit_id && ev.getContent().body === state.edit.new_body,
                    `edit not applied to message ${i} after restart: replacingEventId=${ev.replacingEventId()} body="${ev.getContent().body}"`,
                );
            } else {
                check(ev.getContent().body === m.body, `message ${i} body is "${ev.getContent().body}", expected "${m.body}"`);
            }
        }
        if (state.reaction) {
            const rels = room.relations.getChildEventsForEvent(state.reaction.target, "m.annotation", "m.reaction");
            check(rels && rels.getRelations().some((e) => e.getId() === state.reaction.id), "reaction missing from history");
        }
        if (state.thread) {
            const tr = await within("GET relations m.thread (verify)", alice.relations(roomId, state.thread.root, "m.thread"));
            check(tr.events.some((e) => e.getId() === state.thread.reply), "thread reply missing from /relations after restart");
        }
        // A single event fetch must also give the redacted form.
        const red = await within("GET /rooms/{roomId}/event/{eventId}", alice.fetchRoomEvent(roomId, state.redacted));
        check(red.content && red.content.body === undefined && red.unsigned?.redacted_because, `GET event of redacted message: ${JSON.stringify(red).slice(0, 400)}`);
        note("history verified");

        // Bob logs in again and leaves; alice sees it.
        bob = await login(baseUrl, B.username, B.password, B.user_id);
        const bobJoined = await within("GET /joined_rooms (bob)", bob.getJoinedRooms());
        check(bobJoined.joined_rooms.includes(roomId), "bob's joined_rooms lacks the room");
        await within("bob leaves", bob.leave(roomId));
        await waitFor("alice sees bob leave", () => room.getMember(B.user_id)?.membership === "leave");
        const bobJoined2 = await within("GET /joined_rooms (bob, after leave)", bob.getJoinedRooms());
        check(!bobJoined2.joined_rooms.includes(roomId), "bob's joined_rooms still lists the room after leaving");
        const members2 = await within("GET /joined_members after leave", alice.getJoinedRoomMembers(roomId));
        check(
            JSON.stringify(Object.keys(members2.joined || {})) === JSON.stringify([A.user_id]),
            `joined members after bob left: ${JSON.stringify(Object.keys(members2.joined || {}))}`,
        );
        note("leave verified");
    } finally {
        stopAll(alice, ...(bob ? [bob] : []));
    }
}

// ---------------------------------------------------------------- main
async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
}

async function main() {
    const [baseUrl, phase, stateArg] = process.argv.slice(2);
    if (!baseUrl || !["chat", "verify"].includes(phase)) {
        process.stderr.write("usage: node scenario.mjs <baseUrl> chat|verify [stateJSON]\n");
        process.exit(2);
    }
    try {
        if (phase === "chat") {
            const state = await phaseChat(baseUrl.replace(/\/$/, ""));
            process.stdout.write(JSON.stringify(state) + "\n");
        } else {
            const raw = stateArg || (await within("reading state from stdin", readStdin(), 10000));
            const line = raw.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("{")).pop();
            check(line, "no state JSON given (argv or stdin)");
            let state;
            try {
                state = JSON.parse(line);
            } catch (e) {
                fail(`state is not valid JSON: ${e.message}`);
            }
            await phaseVerify(baseUrl.replace(/\/$/, ""), state);
        }
        note(`phase ${phase} OK`);
        process.exit(0);
    } catch (e) {
        const msg = e instanceof ScenarioError ? e.message : `unexpected error: ${describeError(e)}\n${e && e.stack}`;
        process.stderr.write(`FAIL (${phase}): ${msg}\n`);
        process.exit(1);
    }
}

await main();
