// End-to-end encryption stories driven by matrix-js-sdk with its Rust crypto, over real HTTP.
//
//   node e2ee.mjs <baseUrl> megolm     two users chat in an encrypted room; a later device decrypts new messages
//   node e2ee.mjs <baseUrl> verify     cross-signing + secret storage, then SAS verification of a second device
//   node e2ee.mjs <baseUrl> backup     key backup filled by one device, restored by a brand-new one
//   node e2ee.mjs <baseUrl> interop    (stdin: JSON from the nio side) chat with a matrix-nio user
//   node e2ee.mjs <baseUrl> federated  (stdin: JSON) the same with a nio user of another server,
//                                      new devices on both sides (tests/federation/e2ee_story.py)
//   node e2ee.mjs <baseUrl> crossverify (stdin: {"remote_url"}) a user here and one on another
//                                      server verify each other (SAS over to-device, cross-signing)
//
// On success one JSON line goes to stdout: {"secrets": [...plaintexts sent encrypted], "plain": [...]}.
// On failure a reason goes to stderr and the exit code is 1. Everything the SDK logs goes to stderr.
// VECHE_JS_HTTP_LOG=/file appends "METHOD /path STATUS" of every request.

import { appendFileSync, readFileSync } from "node:fs";
import { ScenarioError, check, describeError, fail, rand, sleep, within as withinMs } from "./common.mjs";

for (const m of ["log", "info", "debug", "trace", "warn"]) console[m] = (...a) => console.error(...a);

const sdk = await import("matrix-js-sdk");
const { createClient, ClientEvent } = sdk;
const { CryptoEvent, VerificationPhase, VerifierEvent } = await import("matrix-js-sdk/lib/crypto-api/index.js");
try {
    const { logger } = await import("matrix-js-sdk/lib/logger.js");
    logger.setLevel(process.env.VECHE_JS_SDK_LOGLEVEL || "error");
} catch {
    /* not fatal */
}

const WAIT_MS = Number(process.env.VECHE_JS_WAIT_MS || 45000);
const OVERALL_MS = Number(process.env.VECHE_JS_OVERALL_MS || 200000);
const PASSWORD = "correct horse battery e2ee";
const DEHYDRATION_PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1";
const ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };

const started = Date.now();
const note = (msg) => process.stderr.write(`[e2ee +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
setTimeout(() => {
    process.stderr.write(`FAIL: exceeded the overall limit of ${OVERALL_MS} ms\n`);
    process.exit(1);
}, OVERALL_MS).unref();

const httpLog = process.env.VECHE_JS_HTTP_LOG;
const serverErrors = []; // any 5xx answer fails the story, even if the SDK retried past it
const realFetch = globalThis.fetch.bind(globalThis);
async function loggingFetch(input, init) {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const method = (init && init.method) || (input && input.method) || "GET";
    const res = await realFetch(input, init);
    if (httpLog) appendFileSync(httpLog, `${method} ${url.pathname} ${res.status}\n`);
    if (res.status >= 500) {
        serverErrors.push(`${method} ${url.pathname} ${res.status}`);
        note(`HTTP ${res.status} for ${method} ${url.pathname}`);
    }
    return res;
}


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

const within = (what, promise, ms = WAIT_MS) => withinMs(what, promise, ms);

// ---------------------------------------------------------------- accounts and devices
const bare = (baseUrl) => createClient({ baseUrl, fetchFn: loggingFetch });

async function register(baseUrl, username) {
    const c = bare(baseUrl);
    let session;
    try {
        await c.registerRequest({ username, password: PASSWORD });
        fail(`registration of ${username} without auth succeeded`);
    } catch (e) {
        if (e instanceof ScenarioError) throw e;
        check(e.httpStatus === 401 && e.data && e.data.session, `register ${username}: ${describeError(e)}`);
        session = e.data.session;
    }
    const res = await within(`register ${username}`,
        c.registerRequest({ username, password: PASSWORD, auth: { type: "m.login.dummy", session } }));
    return res.user_id;
}

/** A logged-in device with Rust crypto, synced once. `recoveryKey` answers secret-storage prompts. */
async function device(baseUrl, userId, label, holder = {}) {
    const res = await within(`login ${userId} (${label})`, bare(baseUrl).loginRequest({
        type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: PASSWORD,
        initial_device_display_name: label,
    }));
    const client = createClient({
        baseUrl, fetchFn: loggingFetch, userId: res.user_id, accessToken: res.access_token,
        deviceId: res.device_id, localTimeoutMs: 60000,
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                const key = holder.recoveryKey;
                if (!key) return null;
                const keyId = Object.keys(keys).find((k) => !key.keyId || k === key.keyId) || Object.keys(keys)[0];
                return [keyId, key.privateKey];
            },
            cacheSecretStorageKey: (keyId, _info, privateKey) => {
                holder.recoveryKey = { ...(holder.recoveryKey || {}), keyId, privateKey };
            },
        },
    });
    client.label = label;
    await within(`initRustCrypto (${label})`, client.initRustCrypto({ useIndexedDB: false }));
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                note(`sync error for ${label}: ${describeError(data && data.error)}`);
            }
        };
        client.on(ClientEvent.Sync, onSync);
        setTimeout(() => reject(new Error("no first sync")), WAIT_MS).unref();
    });
    await client.startClient({ initialSyncLimit: 50, lazyLoadMembers: false });
    await within(`first sync (${label})`, prepared);
    note(`${label}: ${res.user_id} device ${res.device_id} ready`);
    return client;
}

const uia = (userId) => async (makeRequest) => {
    try {
        await makeRequest(null);
    } catch (e) {
        if (e.httpStatus !== 401 || !e.data || !e.data.session) throw e;
        await makeRequest({
            type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: PASSWORD,
            session: e.data.session,
        });
    }
};

// ---------------------------------------------------------------- rooms and messages
async function createRoom(client, invite, encrypted = true) {
    const { room_id: roomId } = await within(`createRoom by ${client.label}`, client.createRoom({
        preset: "private_chat", invite, initial_state: encrypted ? [ENCRYPTION] : [],
    }));
    return roomId;
}

async function join(client, roomId) {
    await waitFor(`${client.label} sees the invite to ${roomId}`, () => client.getRoom(roomId));
    await within(`${client.label} joins ${roomId}`, client.joinRoom(roomId));
    await waitFor(`${client.label} is joined`, () => client.getRoom(roomId)?.getMyMembership() === "join");
}

async function waitEncryptionKnown(client, roomId) {
    await waitFor(`${client.label} knows ${roomId} is encrypted`,
        () => client.getCrypto().isEncryptionEnabledInRoom(roomId));
}

async function send(client, roomId, body) {
    const { event_id: eventId } = await within(`${client.label} sends "${body}"`,
        client.sendMessage(roomId, { msgtype: "m.text", body }));
    return eventId;
}

/** Wait until `client` holds `body` decrypted from an m.room.encrypted event in the room. */
async function waitDecrypted(client, roomId, body, ms = WAIT_MS) {
    let last = "";
    try {
        return await waitFor(`${client.label} decrypts "${body}"`, () => {
            const events = client.getRoom(roomId)?.getLiveTimeline().getEvents() || [];
            const enc = events.filter((e) => e.getWireType() === "m.room.encrypted");
            last = enc.map((e) => (e.isDecryptionFailure() ? `UTD(${e.decryptionFailureReason})` : e.getContent().body)).join(" | ");
            return enc.find((e) => e.getType() === "m.room.message" && e.getContent().body === body);
        }, ms);
    } catch (e) {
        throw new ScenarioError(`${e.message}; encrypted events seen: [${last}]`);
    }
}

async function stop(...clients) {
    for (const c of clients) {
        c.stopClient();
    }
}

// ---------------------------------------------------------------- stories
/** Done-when 1: two users and a later second device all decrypt. */
async function megolm(baseUrl) {
    const tag = rand();
    const alice = await register(baseUrl, `ealice${tag}`);
    const bob = await register(baseUrl, `ebob${tag}`);
    const a1 = await device(baseUrl, alice, "alice-1");
    const b1 = await device(baseUrl, bob, "bob-1");
    // (Invited after creation: Veche's createRoom does not send invites to other servers.)
    const roomId = await createRoom(a1, []);
    await within("alice invites bob", a1.invite(roomId, bob));
    await join(b1, roomId);
    await waitEncryptionKnown(a1, roomId);
    await waitEncryptionKnown(b1, roomId);
    const secrets = [`megolm-a-${tag}`, `megolm-b-${tag}`, `megolm-a2-${tag}`, `megolm-b2-${tag}`, `megolm-new-${tag}`];
    await send(a1, roomId, secrets[0]);
    await waitDecrypted(b1, roomId, secrets[0]);
    await send(b1, roomId, secrets[1]);
    await waitDecrypted(a1, roomId, secrets[1]);
    note("alice and bob decrypt each other");

    // Alice logs in on a second device: both senders must share their sessions with it. They
    // learn of it from device_lists.changed in /sync (no forced /keys/query here).
    const a2 = await device(baseUrl, alice, "alice-2");
    await waitFor("bob sees alice's new device", async () => {
        const map = await b1.getCrypto().getUserDeviceInfo([alice], false);
        return map.get(alice)?.has(a2.getDeviceId());
    });
    await waitFor("alice-1 sees her new device", async () => {
        const map = await a1.getCrypto().getUserDeviceInfo([alice], false);
        return map.get(alice)?.has(a2.getDeviceId());
    });
    await send(a1, roomId, secrets[2]);
    await send(b1, roomId, secrets[3]);
    await waitDecrypted(a2, roomId, secrets[2]);
    await waitDecrypted(a2, roomId, secrets[3]);
    await waitDecrypted(b1, roomId, secrets[2]);
    note("the new device decrypts new messages from both");
    await send(a2, roomId, secrets[4]);
    await waitDecrypted(a1, roomId, secrets[4]);
    await waitDecrypted(b1, roomId, secrets[4]);
    const plain = await plainControl(a1, b1, bob, tag);
    await stop(a1, a2, b1);
    return { secrets, plain };
}

/** A message in an unencrypted room: the control that proves the database grep can find text. */
async function plainControl(sender, receiver, receiverId, tag) {
    const roomId = await createRoom(sender, [receiverId], false);
    await join(receiver, roomId);
    const body = `plain-control-${tag}`;
    await send(sender, roomId, body);
    return [body];
}

/** Done-when 2: cross-signing and secret storage, then SAS between two devices of one user. */
async function verify(baseUrl) {
    const tag = rand();
    const alice = await register(baseUrl, `valice${tag}`);
    const holder = {};
    const a1 = await device(baseUrl, alice, "alice-1", holder);
    const c1 = a1.getCrypto();
    await within("bootstrapCrossSigning", c1.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia(alice) }));
    check(await c1.isCrossSigningReady(), "cross-signing not ready after bootstrapCrossSigning");
    const recovery = await c1.createRecoveryKeyFromPassphrase();
    holder.recoveryKey = { privateKey: recovery.privateKey };
    await within("bootstrapSecretStorage", c1.bootstrapSecretStorage({
        createSecretStorageKey: async () => recovery, setupNewSecretStorage: true,
    }));
    check(await c1.isSecretStorageReady(), "secret storage not ready after bootstrapSecretStorage");
    const status = await c1.getCrossSigningStatus();
    check(status.publicKeysOnDevice && status.privateKeysInSecretStorage, `cross-signing status: ${JSON.stringify(status)}`);
    const own = await c1.getDeviceVerificationStatus(alice, a1.getDeviceId());
    check(own && own.crossSigningVerified, `alice-1 is not cross-signed by herself: ${JSON.stringify(own)}`);
    note("cross-signing and secret storage bootstrapped");

    const a2 = await device(baseUrl, alice, "alice-2", {});
    const c2 = a2.getCrypto();
    await waitFor("alice-2 sees alice-1", async () =>
        (await c2.getUserDeviceInfo([alice], true)).get(alice)?.has(a1.getDeviceId()));
    await waitFor("alice-1 sees alice-2", async () =>
        (await c1.getUserDeviceInfo([alice], true)).get(alice)?.has(a2.getDeviceId()));
    const before12 = await c1.getDeviceVerificationStatus(alice, a2.getDeviceId());
    check(before12 && !before12.crossSigningVerified, `alice-2 cross-signed before verification: ${JSON.stringify(before12)}`);
    const before21 = await c2.getDeviceVerificationStatus(alice, a1.getDeviceId());
    check(before21 && !before21.isVerified(), `alice-1 verified on alice-2 before verification: ${JSON.stringify(before21)}`);

    // SAS (emoji) verification, requested by the new device, accepted by the old one.
    const received = new Promise((resolve) => a1.on(CryptoEvent.VerificationRequestReceived, resolve));
    const req2 = await within("requestOwnUserVerification", c2.requestOwnUserVerification());
    const req1 = await within("alice-1 receives the verification request", received);
    await within("alice-1 accepts", req1.accept());
    await waitFor("request ready on alice-2", () => req2.phase === VerificationPhase.Ready);
    const verifier2 = await within("alice-2 starts SAS", req2.startVerification("m.sas.v1"));
    const sas = {};
    const confirmWhenShown = (verifier, who) => verifier.on(VerifierEvent.ShowSas, (s) => {
        sas[who] = s.sas.emoji.map((e) => e[1]).join(",");
        s.confirm();
    });
    confirmWhenShown(verifier2, "a2");
    const done2 = verifier2.verify();
    await waitFor("alice-1's verifier", () => req1.verifier);
    confirmWhenShown(req1.verifier, "a1");
    await within("SAS on alice-1", req1.verifier.verify());
    await within("SAS on alice-2", done2);
    check(sas.a1 && sas.a1 === sas.a2, `the two devices showed different emoji: ${sas.a1} vs ${sas.a2}`);
    note(`SAS done, emoji ${sas.a1}`);

    const v12 = await waitFor("alice-1 reports alice-2 cross-signing verified", async () => {
        const s = await c1.getDeviceVerificationStatus(alice, a2.getDeviceId());
        return s && s.crossSigningVerified && s;
    });
    const v21 = await waitFor("alice-2 reports alice-1 verified", async () => {
        const s = await c2.getDeviceVerificationStatus(alice, a1.getDeviceId());
        return s && s.isVerified() && s;
    });
    // A third device trusts neither yet, but sees the signature the first one uploaded.
    const a3 = await device(baseUrl, alice, "alice-3", {});
    const seen = await waitFor("alice-3 sees alice-2 signed by the self-signing key", async () => {
        const keys = await a3.http.authedRequest("POST", "/keys/query", undefined, { device_keys: { [alice]: [] } });
        const sigs = keys.device_keys?.[alice]?.[a2.getDeviceId()]?.signatures?.[alice] || {};
        const ssk = Object.keys(keys.self_signing_keys?.[alice]?.keys || {})[0];
        return ssk && sigs[ssk];
    });
    check(seen, "no self-signing signature on alice-2");
    note(`verified: ${JSON.stringify({ v12, v21 })}`);
    await stop(a1, a2, a3);
    return { secrets: [], plain: [] };
}

/** Alice's first device, with cross-signing and secret storage under a new recovery key. */
async function firstDeviceWithRecovery(baseUrl, alice, secretStorageOpts = {}) {
    const holder = {};
    const a1 = await device(baseUrl, alice, "alice-1", holder);
    const c1 = a1.getCrypto();
    await within("bootstrapCrossSigning", c1.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia(alice) }));
    const recovery = await c1.createRecoveryKeyFromPassphrase();
    holder.recoveryKey = { privateKey: recovery.privateKey };
    await within(`bootstrapSecretStorage ${JSON.stringify(secretStorageOpts)}`, c1.bootstrapSecretStorage({
        createSecretStorageKey: async () => recovery, setupNewSecretStorage: true, ...secretStorageOpts,
    }));
    return { a1, c1, recovery };
}

/** Done-when 3: a backup made by one device, restored by a brand-new one. */
async function backup(baseUrl) {
    const tag = rand();
    const alice = await register(baseUrl, `balice${tag}`);
    const bob = await register(baseUrl, `bbob${tag}`);
    const { a1, c1, recovery } = await firstDeviceWithRecovery(baseUrl, alice, { setupNewKeyBackup: true });
    const version = await waitFor("an active key backup on alice-1", () => c1.getActiveSessionBackupVersion());
    note(`key backup version ${version} active`);

    const b1 = await device(baseUrl, bob, "bob-1");
    // (Invited after creation: Veche's createRoom does not send invites to other servers.)
    const roomId = await createRoom(a1, []);
    await within("alice invites bob", a1.invite(roomId, bob));
    await join(b1, roomId);
    await waitEncryptionKnown(b1, roomId);
    const secrets = [`backup-a-${tag}`, `backup-b-${tag}`];
    await send(a1, roomId, secrets[0]);
    await waitDecrypted(b1, roomId, secrets[0]);
    await send(b1, roomId, secrets[1]);
    await waitDecrypted(a1, roomId, secrets[1]);
    const info = await waitFor("both sessions in the server-side backup", async () => {
        const v = await a1.http.authedRequest("GET", "/room_keys/version");
        return v.version === version && v.count >= 2 && v;
    });
    note(`backup holds ${info.count} keys (etag ${info.etag})`);
    // The old device goes away: the only way for a new device to read history is the backup.
    await stop(a1);

    const newHolder = { recoveryKey: { privateKey: recovery.privateKey } };
    const a2 = await device(baseUrl, alice, "alice-new", newHolder);
    const c2 = a2.getCrypto();
    await waitFor("alice-new has the room", () => a2.getRoom(roomId));
    await within("loadSessionBackupPrivateKeyFromSecretStorage", c2.loadSessionBackupPrivateKeyFromSecretStorage());
    await within("checkKeyBackupAndEnable", c2.checkKeyBackupAndEnable());
    const restored = await within("restoreKeyBackup", c2.restoreKeyBackup());
    check(restored.imported >= 2, `restoreKeyBackup imported ${JSON.stringify(restored)}`);
    note(`restored ${JSON.stringify(restored)}`);
    for (const s of secrets) await waitDecrypted(a2, roomId, s);
    note("the new device decrypts history from the backup");
    const plain = await plainControl(a2, b1, bob, tag);
    await stop(a2, b1);
    return { secrets, plain };
}

/** Dehydrated devices (MSC3814): a room key sent while alice has no device online is kept
 *  for her dehydrated device, and her next new device rehydrates it and decrypts. */
async function dehydrate(baseUrl) {
    const tag = rand();
    const alice = await register(baseUrl, `dalice${tag}`);
    const bob = await register(baseUrl, `dbob${tag}`);
    const { a1, c1, recovery } = await firstDeviceWithRecovery(baseUrl, alice);
    check(await c1.isDehydrationSupported(), "the server does not support dehydrated devices");
    await within("startDehydration", c1.startDehydration({ createNewKey: true }));
    const parked = await within("GET dehydrated_device", a1.http.authedRequest(
        "GET", "/dehydrated_device", undefined, undefined, { prefix: DEHYDRATION_PREFIX }));
    note(`dehydrated device ${parked.device_id} parked`);

    const b1 = await device(baseUrl, bob, "bob-1");
    // (Invited after creation: Veche's createRoom does not send invites to other servers.)
    const roomId = await createRoom(a1, []);
    await within("alice invites bob", a1.invite(roomId, bob));
    await join(b1, roomId);
    await waitEncryptionKnown(b1, roomId);
    // Alice's only real device goes away: the dehydrated device is all bob can encrypt to.
    await within("alice-1 logs out", a1.logout(true));
    await waitFor("bob sees only alice's dehydrated device", async () => {
        const devices = (await b1.getCrypto().getUserDeviceInfo([alice], true)).get(alice);
        return devices && devices.size === 1 && devices.has(parked.device_id);
    });
    const secret = `dehydrated-${tag}`;
    await send(b1, roomId, secret);

    const a2 = await device(baseUrl, alice, "alice-2", { recoveryKey: { privateKey: recovery.privateKey } });
    const c2 = a2.getCrypto();
    let roomKeys = 0;
    a2.on(CryptoEvent.RehydrationProgress, (keys) => { roomKeys = keys; });
    // Importing the private keys needs the public ones first (the first /keys/query may
    // still be in flight).
    await within("alice-2 fetches alice's cross-signing keys", c2.userHasCrossSigningKeys(alice, true));
    await within("alice-2 takes cross-signing from secret storage",
        c2.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia(alice) }));
    await within("alice-2 rehydrates", c2.startDehydration({ rehydrate: true }));
    check(roomKeys >= 1, `rehydration brought ${roomKeys} room keys`);
    await waitFor("alice-2 has the room", () => a2.getRoom(roomId));
    await waitDecrypted(a2, roomId, secret);
    note("alice-2 decrypts what only the dehydrated device was sent");
    const fresh = await within("GET the new dehydrated_device", a2.http.authedRequest(
        "GET", "/dehydrated_device", undefined, undefined, { prefix: DEHYDRATION_PREFIX }));
    check(fresh.device_id !== parked.device_id, "alice-2 parked a fresh dehydrated device");
    const plain = await plainControl(a2, b1, bob, tag);
    await stop(a2, b1);
    return { secrets: [secret], plain };
}

/** Done-when 4: a matrix-nio user invited us into its encrypted room. */
async function interop(baseUrl, state) {
    const js = await device(baseUrl, state.js_user, "js-interop");
    const roomId = state.room_id;
    await join(js, roomId);
    await waitEncryptionKnown(js, roomId);
    const mine = `js-to-nio-${rand()}`;
    await send(js, roomId, mine);
    note(`sent ${mine}`);
    await waitDecrypted(js, roomId, state.nio_text, 90000);
    note("decrypted nio's message");
    // Stay online until nio has read ours (it says so by sending its ack).
    await waitDecrypted(js, roomId, state.nio_ack_prefix + mine, 90000);
    await stop(js);
    return { secrets: [mine], plain: [] };
}

/** A message decrypted by `client` whose body starts with `prefix`: its body. */
async function waitDecryptedPrefix(client, roomId, prefix, ms = WAIT_MS) {
    const ev = await waitFor(`${client.label} decrypts "${prefix}..."`, () => {
        const events = client.getRoom(roomId)?.getLiveTimeline().getEvents() || [];
        return events.find((e) => e.getWireType() === "m.room.encrypted" && e.getType() === "m.room.message"
            && String(e.getContent().body || "").startsWith(prefix));
    }, ms);
    return ev.getContent().body;
}

/** Issue 13 done-when 1: a nio user of another server (state.nio_user) invited us into its
 * encrypted room. Each side adds a device; each new device decrypts what is sent after it
 * appeared. The steps are paced by messages in the room (see tests/federation/e2ee_story.py). */
async function federated(baseUrl, state) {
    const { room_id: roomId, tag, nio_user: nio } = state;
    const j1 = await device(baseUrl, state.js_user, "js-1");
    const keyRequests = [];
    j1.on(ClientEvent.ToDeviceEvent, (ev) => {
        if (ev.getType() === "m.room_key_request" && ev.getSender() === nio) keyRequests.push(ev.getContent());
    });
    await join(j1, roomId);
    await waitEncryptionKnown(j1, roomId);
    const secrets = [`js-1-${tag}`];
    await send(j1, roomId, secrets[0]);
    await waitDecrypted(j1, roomId, `nio-1-${tag}`, 90000);
    note("js-1 and nio-1 decrypt each other across servers");

    const j2 = await device(baseUrl, state.js_user, "js-2");
    await waitEncryptionKnown(j2, roomId);
    await waitFor("js-1 sees its new device", async () => {
        const map = await j1.getCrypto().getUserDeviceInfo([state.js_user], false);
        return map.get(state.js_user)?.has(j2.getDeviceId());
    });
    secrets.push(`js2-ready:${j2.getDeviceId()}:${tag}`);
    await send(j1, roomId, secrets[1]);
    await waitDecrypted(j2, roomId, `nio-2-${tag}`, 90000);
    note("js-2 (new) decrypts nio's message sent after it appeared");

    const ready = await waitDecryptedPrefix(j1, roomId, "nio2-ready:", 90000);
    const nio2 = ready.split(":")[1];
    await waitFor(`js-1 learns of nio's new device ${nio2}`, async () => {
        const map = await j1.getCrypto().getUserDeviceInfo([nio], false);
        return map.get(nio)?.has(nio2);
    }, 60000);
    secrets.push(`js-3-${tag}`);
    await send(j1, roomId, secrets[2]);
    note("sent js-3 for nio's new device");
    await waitDecrypted(j1, roomId, `bye-${tag}`, 120000);
    await waitDecrypted(j2, roomId, `bye-${tag}`, 30000);
    await stop(j1, j2);
    return { secrets, plain: [], key_requests: keyRequests.length };
}

/** SAS between request `reqA` (sent) and the request `received` resolves to; both confirm. */
async function sasBoth(reqA, received) {
    const reqB = await within("the verification request arrives", received);
    await within("accept", reqB.accept());
    await waitFor("request ready", () => reqA.phase === VerificationPhase.Ready);
    const verifierA = await within("start SAS", reqA.startVerification("m.sas.v1"));
    const sas = {};
    const confirmWhenShown = (verifier, who) => verifier.on(VerifierEvent.ShowSas, (s) => {
        sas[who] = s.sas.emoji.map((e) => e[1]).join(",");
        s.confirm();
    });
    confirmWhenShown(verifierA, "a");
    const doneA = verifierA.verify();
    await waitFor("the other side's verifier", () => reqB.verifier);
    confirmWhenShown(reqB.verifier, "b");
    await within("SAS (receiver)", reqB.verifier.verify());
    await within("SAS (sender)", doneA);
    check(sas.a && sas.a === sas.b, `the two sides showed different emoji: ${sas.a} vs ${sas.b}`);
    return sas.a;
}

/** Issue 13: a user here and a user of another server, each cross-signed, verify each other's
 * device by SAS (to-device messages across the servers); then each trusts the other's device
 * through cross-signing, and a fresh device here is served its user's signature of the
 * remote user's master key. */
async function crossverify(baseUrl, state) {
    const tag = rand();
    const remote = state.remote_url;
    const alice = await register(baseUrl, `xalice${tag}`);
    const bob = await register(remote, `xbob${tag}`);
    const a1 = await device(baseUrl, alice, "alice-1");
    const b1 = await device(remote, bob, "bob-1");
    for (const [c, u] of [[a1, alice], [b1, bob]]) {
        await within(`bootstrapCrossSigning ${u}`, c.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia(u) }));
    }
    // An encrypted room makes each crypto track the other user's devices.
    // (Invited after creation: Veche's createRoom does not send invites to other servers.)
    const roomId = await createRoom(a1, []);
    await within("alice invites bob", a1.invite(roomId, bob));
    await join(b1, roomId);
    await waitEncryptionKnown(a1, roomId);
    await waitEncryptionKnown(b1, roomId);
    await waitFor("alice sees bob's device", async () =>
        (await a1.getCrypto().getUserDeviceInfo([bob], false)).get(bob)?.has(b1.getDeviceId()));
    await waitFor("bob sees alice's device", async () =>
        (await b1.getCrypto().getUserDeviceInfo([alice], false)).get(alice)?.has(a1.getDeviceId()));
    const before = await a1.getCrypto().getDeviceVerificationStatus(bob, b1.getDeviceId());
    check(before && !before.crossSigningVerified, `bob-1 trusted before verification: ${JSON.stringify(before)}`);

    const received = new Promise((resolve) => b1.on(CryptoEvent.VerificationRequestReceived, resolve));
    const reqA = await within("alice requests verification of bob-1",
        a1.getCrypto().requestDeviceVerification(bob, b1.getDeviceId()));
    const emoji = await sasBoth(reqA, received);
    note(`SAS across servers done, emoji ${emoji}`);

    await waitFor("alice trusts bob's identity", async () =>
        (await a1.getCrypto().getUserVerificationStatus(bob)).isCrossSigningVerified());
    await waitFor("alice trusts bob-1 through cross-signing", async () =>
        (await a1.getCrypto().getDeviceVerificationStatus(bob, b1.getDeviceId()))?.crossSigningVerified);
    await waitFor("bob trusts alice's identity", async () =>
        (await b1.getCrypto().getUserVerificationStatus(alice)).isCrossSigningVerified());
    await waitFor("bob trusts alice-1 through cross-signing", async () =>
        (await b1.getCrypto().getDeviceVerificationStatus(alice, a1.getDeviceId()))?.crossSigningVerified);

    // Alice's user-signing key signed bob's master key; her server keeps the signature.
    const a2 = await device(baseUrl, alice, "alice-2");
    const signed = await waitFor("alice-2 is served her signature of bob's master key", async () => {
        const keys = await a2.http.authedRequest("POST", "/keys/query", undefined, { device_keys: { [alice]: [], [bob]: [] } });
        const usk = Object.keys(keys.user_signing_keys?.[alice]?.keys || {})[0];
        const sigs = keys.master_keys?.[bob]?.signatures?.[alice] || {};
        return usk && sigs[usk];
    });
    check(signed, "no signature of alice on bob's master key");
    await stop(a1, a2, b1);
    return { secrets: [], plain: [], emoji };
}

// ---------------------------------------------------------------- main
const [baseUrl, phase] = process.argv.slice(2);
try {
    let result;
    if (phase === "megolm") result = await megolm(baseUrl);
    else if (phase === "verify") result = await verify(baseUrl);
    else if (phase === "backup") result = await backup(baseUrl);
    else if (phase === "dehydrate") result = await dehydrate(baseUrl);
    else if (phase === "interop") result = await interop(baseUrl, JSON.parse(readFileSync(0, "utf8")));
    else if (phase === "crossverify") result = await crossverify(baseUrl, JSON.parse(readFileSync(0, "utf8")));
    else if (phase === "federated") result = await federated(baseUrl, JSON.parse(readFileSync(0, "utf8")));
    else fail(`unknown phase ${phase}`);
    check(serverErrors.length === 0, `the server answered with errors: ${serverErrors.join("; ")}`);
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
} catch (e) {
    process.stderr.write(`FAIL: ${e instanceof ScenarioError ? e.message : describeError(e) + "\n" + e.stack}\n`);
    process.exit(1);
}
