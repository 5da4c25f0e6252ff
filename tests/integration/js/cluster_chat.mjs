// One matrix-js-sdk client of tests/scaleout/test_nio_chat.py, pinned to one Veche process:
// it syncs, says "ready", waits for "go" on stdin, sends its messages, and once its room's
// timeline holds `total` messages prints their bodies in timeline order as one JSON line.
//
// node cluster_chat.mjs BASE_URL USER_ID DEVICE_ID ACCESS_TOKEN ROOM_ID TAG COUNT TOTAL

import { createInterface } from "node:readline";

import { check, describeError, quietSdk, rand, sleep, within } from "./common.mjs";

const [baseUrl, userId, deviceId, accessToken, roomId, tag, countArg, totalArg] = process.argv.slice(2);
const count = Number(countArg);
const total = Number(totalArg);

const sdk = await quietSdk();
// "detached": the client's own sends wait aside until the server's copy comes back, which
// the timeline then places where the server put it.
const client = sdk.createClient({ baseUrl, accessToken, userId, deviceId });
const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => {
        if (state === "PREPARED") resolve();
    });
});
await client.startClient({ initialSyncLimit: 100, pendingEventOrdering: "detached", lazyLoadMembers: false });
await within("first sync", prepared, 60000);

const messages = () => {
    const room = client.getRoom(roomId);
    if (!room) return [];
    return room.getLiveTimeline().getEvents()
        .filter((e) => e.getType() === "m.room.message" && e.getId()?.startsWith("$"))
        .map((e) => e.getContent().body);
};

process.stdout.write(JSON.stringify({ ready: true }) + "\n");
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));

try {
    for (let i = 0; i < count; i++) {
        await client.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: `${tag}-${i}` }, `${tag}-${i}-${rand()}`);
        await sleep(Math.random() * 40);
    }
} catch (e) {
    check(false, `send: ${describeError(e)}`);
}
await within(`all ${total} messages`, (async () => {
    while (messages().length < total) await sleep(50);
})(), 90000);
process.stdout.write(JSON.stringify({ order: messages() }) + "\n");
client.stopClient();
process.exit(0);
