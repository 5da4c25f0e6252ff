// matrix-js-sdk against what a community's Element users touch beyond chat: a space's
// hierarchy, server-side search with context, pushers, TURN credentials for calls and an
// OpenID token a widget would check.
//
//   node community.mjs <baseUrl> community   -> prints {"ok": true, ...} on stdout, exit 0
import { check, quietSdk, rand, registerClient } from "./common.mjs";

const sdk = await quietSdk(["log", "info", "debug", "trace", "warn"]);

const baseUrl = process.argv[2];
const tag = rand();
const alice = await registerClient(sdk, baseUrl, `calice${tag}`, "community-password");
const bob = await registerClient(sdk, baseUrl, `cbob${tag}`, "community-password");
const server = alice.getUserId().split(":").slice(1).join(":");

// A space with a suggested lobby and a sub-space holding a workshop room.
const space = (await alice.createRoom({ name: "Neighbourhood", preset: "public_chat",
    creation_content: { type: "m.space" } })).room_id;
const lobby = (await alice.createRoom({ name: "Lobby", preset: "public_chat" })).room_id;
const sub = (await alice.createRoom({ name: "Projects", preset: "public_chat",
    creation_content: { type: "m.space" } })).room_id;
const workshop = (await alice.createRoom({ name: "Workshop", preset: "public_chat" })).room_id;
await alice.sendStateEvent(space, "m.space.child", { via: [server], suggested: true, order: "a" }, lobby);
await alice.sendStateEvent(space, "m.space.child", { via: [server], order: "b" }, sub);
await alice.sendStateEvent(sub, "m.space.child", { via: [server] }, workshop);

const tree = await bob.getRoomHierarchy(space, 10, 5, false);
const names = tree.rooms.map((r) => r.name);
check(JSON.stringify(names) === JSON.stringify(["Neighbourhood", "Lobby", "Projects", "Workshop"]),
    `hierarchy: ${JSON.stringify(names)}`);
check(tree.rooms[0].children_state.length === 2 && tree.rooms[0].room_type === "m.space",
    `space entry: ${JSON.stringify(tree.rooms[0])}`);
const suggested = await bob.getRoomHierarchy(space, 10, 5, true);
check(JSON.stringify(suggested.rooms.map((r) => r.name)) === JSON.stringify(["Neighbourhood", "Lobby"]),
    `suggested only: ${JSON.stringify(suggested.rooms.map((r) => r.name))}`);
const page = await bob.getRoomHierarchy(space, 2, 5, false);
const rest = await bob.getRoomHierarchy(space, 2, 5, false, page.next_batch);
check(page.next_batch && rest.rooms.map((r) => r.name).join() === "Projects,Workshop",
    `paging: ${JSON.stringify(rest)}`);

// Search: bob joins the lobby and finds alice's message, with the messages around it.
await bob.joinRoom(lobby);
for (const body of ["welcome everyone", `the community garden meets on Saturday ${tag}`, "bring gloves"]) {
    await alice.sendMessage(lobby, { msgtype: "m.text", body });
}
const found = await bob.searchRoomEvents({ term: "garden" });
check(found.results.length === 1, `search results: ${found.results.length}`);
const ctx = found.results[0].context;
check(ctx.getEvent().getContent().body.includes(tag), "search found the wrong event");
const around = ctx.getTimeline().map((e) => e.getContent().body);
check(around.includes("welcome everyone") && around.includes("bring gloves"), `context: ${JSON.stringify(around)}`);

// Pushers: what a phone registers, as the app would.
await bob.setPusher({ kind: "http", app_id: "org.example.community", pushkey: `key-${tag}`,
    app_display_name: "Community", device_display_name: "Bob's phone", lang: "en",
    data: { url: "https://push.example.org/_matrix/push/v1/notify", format: "event_id_only" } });
const { pushers } = await bob.getPushers();
check(pushers.length === 1 && pushers[0].pushkey === `key-${tag}` && pushers[0].data.format === "event_id_only",
    `pushers: ${JSON.stringify(pushers)}`);

// Calls: TURN credentials from the server's configured relay (the SDK's own refresh loop
// needs WebRTC, which Node lacks, so ask as it does).
const turn = await bob.turnServer();
check(turn.uris.length === 2 && turn.uris.every((u) => u.startsWith("turn")) && turn.password
    && turn.username.endsWith(bob.getUserId()) && turn.ttl > 0, `TURN: ${JSON.stringify(turn)}`);

// Widgets: an OpenID token that the server vouches for.
const openid = await bob.getOpenIdToken();
const who = await (await fetch(`${baseUrl}/_matrix/federation/v1/openid/userinfo?access_token=${
    encodeURIComponent(openid.access_token)}`)).json();
check(who.sub === bob.getUserId(), `userinfo: ${JSON.stringify(who)}`);

process.stdout.write(JSON.stringify({ ok: true, rooms: names.length, around: around.length }) + "\n");
process.exit(0);
