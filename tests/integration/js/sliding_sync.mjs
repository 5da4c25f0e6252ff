// A client story over simplified sliding sync (MSC4186): matrix-js-sdk's SlidingSync class
// drives Alice's client (Rust crypto), Bob uses classic /sync.
//
//   node sliding_sync.mjs <baseUrl>
//
// Alice sees her room list and a room's timeline, an incoming message moves its room to the
// top, and an end-to-end encrypted message from Bob is decrypted with the keys that reach
// her through the `to_device` and `e2ee` extensions (and Bob decrypts her answer).
// On success one JSON line goes to stdout; on failure a reason goes to stderr, exit code 1.

import { ScenarioError, check, describeError, fail, rand, sleep, within as withinMs } from "./common.mjs";

for (const m of ["log", "info", "debug", "trace", "warn"]) console[m] = (...a) => console.error(...a);

const sdk = await import("matrix-js-sdk");
const { createClient, ClientEvent } = sdk;
const { SlidingSync, SlidingSyncEvent, SlidingSyncState } = await import("matrix-js-sdk/lib/sliding-sync.js");
try {
    const { logger } = await import("matrix-js-sdk/lib/logger.js");
    logger.setLevel(process.env.VECHE_JS_SDK_LOGLEVEL || "error");
} catch {
    /* not fatal */
}

const WAIT_MS = Number(process.env.VECHE_JS_WAIT_MS || 45000);
const OVERALL_MS = Number(process.env.VECHE_JS_OVERALL_MS || 200000);
const PASSWORD = "correct horse battery sliding";
const ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };
const started = Date.now();
const note = (msg) => process.stderr.write(`[ss +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
setTimeout(() => {
    process.stderr.write(`FAIL: exceeded the overall limit of ${OVERALL_MS} ms\n`);
    process.exit(1);
}, OVERALL_MS).unref();

const serverErrors = [];
const realFetch = globalThis.fetch.bind(globalThis);
async function checkedFetch(input, init) {
    const res = await realFetch(input, init);
    if (res.status >= 500) {
        const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
        serverErrors.push(`${url.pathname} ${res.status}`);
    }
    return res;
}

const within = (what, promise, ms = WAIT_MS) => withinMs(what, promise, ms);

async function waitFor(what, pred, ms = WAIT_MS) {
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
            fail(`timed out after ${ms} ms waiting for: ${what}` + (lastErr ? ` (last error: ${describeError(lastErr)})` : ""));
        }
        await sleep(100);
    }
}

async function account(baseUrl, username) {
    const c = createClient({ baseUrl, fetchFn: checkedFetch });
    let session;
    try {
        await c.registerRequest({ username, password: PASSWORD });
    } catch (e) {
        check(e.httpStatus === 401 && e.data && e.data.session, `register ${username}: ${describeError(e)}`);
        session = e.data.session;
    }
    await within(`register ${username}`,
        c.registerRequest({ username, password: PASSWORD, auth: { type: "m.login.dummy", session } }));
    const res = await within(`login ${username}`, c.loginRequest({
        type: "m.login.password", identifier: { type: "m.id.user", user: username }, password: PASSWORD,
    }));
    const client = createClient({
        baseUrl, fetchFn: checkedFetch, userId: res.user_id, accessToken: res.access_token,
        deviceId: res.device_id, localTimeoutMs: 60000,
    });
    client.label = username;
    await within(`initRustCrypto (${username})`, client.initRustCrypto({ useIndexedDB: false }));
    return client;
}

function firstSync(client) {
    return new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                note(`sync error for ${client.label}: ${describeError(data && data.error)}`);
            }
        };
        client.on(ClientEvent.Sync, onSync);
        setTimeout(() => reject(new ScenarioError(`no first sync for ${client.label}`)), WAIT_MS).unref();
    });
}

const bodies = (client, roomId) => (client.getRoom(roomId)?.getLiveTimeline().getEvents() || [])
    .filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);

async function send(client, roomId, body) {
    await within(`${client.label} sends "${body}"`, client.sendMessage(roomId, { msgtype: "m.text", body }));
}

async function waitDecrypted(client, roomId, body) {
    let last = "";
    try {
        return await waitFor(`${client.label} decrypts "${body}"`, () => {
            const events = client.getRoom(roomId)?.getLiveTimeline().getEvents() || [];
            const enc = events.filter((e) => e.getWireType() === "m.room.encrypted");
            last = enc.map((e) => (e.isDecryptionFailure() ? `UTD(${e.decryptionFailureReason})` : e.getContent().body)).join(" | ");
            return enc.find((e) => e.getType() === "m.room.message" && e.getContent().body === body);
        });
    } catch (e) {
        throw new ScenarioError(`${e.message}; encrypted events seen: [${last}]`);
    }
}

async function story(baseUrl) {
    const tag = rand();
    const alice = await account(baseUrl, `ss_alice_${tag}`);
    const bob = await account(baseUrl, `ss_bob_${tag}`);
    const bobReady = firstSync(bob);
    await bob.startClient({ initialSyncLimit: 20 });
    await within("Bob's first sync", bobReady);

    // Bob makes two rooms with history, and invites Alice before she ever syncs.
    const rooms = [];
    for (const name of ["first", "second"]) {
        const { room_id: roomId } = await within(`createRoom ${name}`, bob.createRoom({
            preset: "private_chat", name: `${name} ${tag}`, invite: [alice.getUserId()],
        }));
        await send(bob, roomId, `${name} hello ${tag}`);
        rooms.push(roomId);
    }
    await within("Alice joins the first room", alice.joinRoom(rooms[0]));
    await within("Alice joins the second room", alice.joinRoom(rooms[1]));

    const roomSub = { timeline_limit: 20, required_state: [["*", "*"]] };
    const lists = new Map([["all", { ranges: [[0, 19]], ...roomSub }]]);
    const sliding = new SlidingSync(baseUrl, lists, roomSub, alice, 5000);
    let lastOrder = [];
    let responses = 0;
    sliding.on(SlidingSyncEvent.Lifecycle, (state, resp) => {
        if (state === SlidingSyncState.Complete && resp) {
            responses += 1;
            const ops = resp.lists?.all?.ops || [];
            if (ops.length) lastOrder = ops.flatMap((op) => op.room_ids);
        }
    });
    const aliceReady = firstSync(alice);
    await alice.startClient({ slidingSync: sliding });
    await within("Alice's first sliding sync", aliceReady);
    note(`Alice synced; list count ${sliding.getListData("all")?.joinedCount}`);

    // The room list: both rooms, newest first, each with its name and timeline.
    await waitFor("Alice's list holds both rooms", () => sliding.getListData("all")?.joinedCount === 2);
    check(lastOrder[0] === rooms[1] && lastOrder[1] === rooms[0], `list order ${lastOrder} is not newest first`);
    for (const [i, name] of ["first", "second"].entries()) {
        await waitFor(`Alice sees the ${name} room's name and timeline`, () =>
            alice.getRoom(rooms[i])?.name === `${name} ${tag}` && bodies(alice, rooms[i]).includes(`${name} hello ${tag}`));
    }

    // An incoming message moves its room to the top.
    await send(bob, rooms[0], "back to the top");
    await waitFor("the message reaches Alice", () => bodies(alice, rooms[0]).includes("back to the top"));
    await waitFor("the first room leads the list", () => lastOrder[0] === rooms[0]);
    const bump = (roomId) => alice.getRoom(roomId)?.getBumpStamp() ?? -1;
    check(bump(rooms[0]) > bump(rooms[1]), `bump stamps ${bump(rooms[0])} <= ${bump(rooms[1])}`);

    // End-to-end encryption: the room key reaches Alice's device as a to-device message.
    const { room_id: secret } = await within("createRoom secret", bob.createRoom({
        preset: "private_chat", invite: [alice.getUserId()], initial_state: [ENCRYPTION],
    }));
    await waitFor("Alice sees the invite", () => alice.getRoom(secret)?.getMyMembership() === "invite");
    await within("Alice joins the encrypted room", alice.joinRoom(secret));
    await waitFor("Bob sees Alice joined", () =>
        bob.getRoom(secret)?.getMember(alice.getUserId())?.membership === "join");
    await send(bob, secret, `secret ${tag}`);
    await waitDecrypted(alice, secret, `secret ${tag}`);
    // And back: Alice encrypts for Bob's device, known through the e2ee extension's lists.
    await waitFor("Alice knows the room is encrypted", () => alice.getCrypto().isEncryptionEnabledInRoom(secret));
    await send(alice, secret, `answer ${tag}`);
    await waitDecrypted(bob, secret, `answer ${tag}`);

    sliding.stop();
    alice.stopClient();
    bob.stopClient();
    check(serverErrors.length === 0, `server errors: ${serverErrors.join(", ")}`);
    // Three rooms in the list at the end: the two and the encrypted one.
    return { responses, order: lastOrder.length, secrets: [`secret ${tag}`, `answer ${tag}`], plain: [`first hello ${tag}`] };
}

try {
    const result = await story(process.argv[2]);
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
} catch (e) {
    process.stderr.write(`FAIL: ${e instanceof ScenarioError ? e.message : describeError(e)}\n${e.stack || ""}\n`);
    process.exit(1);
}
