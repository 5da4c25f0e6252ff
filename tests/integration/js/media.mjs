// matrix-js-sdk and the media repository: alice uploads an image and a file with
// uploadContent; bob downloads both through mxcUrlToHttp (authenticated media) and checks
// the bytes, then asks for thumbnails and checks their sizes.
//
//   node media.mjs <baseUrl> media   -> prints {"ok": true, ...} on stdout, exit 0
import { createHash, randomBytes } from "node:crypto";
import { deflateSync } from "node:zlib";
import { quietSdk, registerClient } from "./common.mjs";

const sdk = await quietSdk(["log", "info", "debug", "trace"]);

const baseUrl = process.argv[2];
function check(cond, msg) {
    if (!cond) throw new Error(msg);
}

const register = (username) => registerClient(sdk, baseUrl, username, "media-password-js");

// A PNG made by hand (no image library in this package): width x height, a diagonal pattern.
function crc32(buf) {
    let c, crc = 0xffffffff;
    for (let n = 0; n < buf.length; n++) {
        c = (crc ^ buf[n]) & 0xff;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        crc = (crc >>> 8) ^ c;
    }
    return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
}
function makePng(w, h) {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
    const rows = [];
    for (let y = 0; y < h; y++) {
        const row = Buffer.alloc(1 + w * 3);
        for (let x = 0; x < w; x++) {
            row[1 + x * 3] = (x + y) % 256;
            row[2 + x * 3] = (x * 3) % 256;
            row[3 + x * 3] = (y * 5) % 256;
        }
        rows.push(row);
    }
    const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}
function pngSize(buf) {
    check(buf.subarray(1, 4).toString() === "PNG", "thumbnail is not a PNG");
    return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
}
const sha = (b) => createHash("sha256").update(b).digest("hex");

async function main() {
    const tag = randomBytes(3).toString("hex");
    const alice = await register(`jsmedia_a_${tag}`);
    const bob = await register(`jsmedia_b_${tag}`);
    const image = makePng(800, 400);
    const file = randomBytes(300 * 1024);
    const up = {};
    for (const [name, data, type] of [["wide.png", image, "image/png"], ["data.bin", file, "application/octet-stream"]]) {
        const res = await alice.uploadContent(data, { name, type });
        check(typeof res.content_uri === "string" && res.content_uri.startsWith("mxc://"), `upload ${name}: ${JSON.stringify(res)}`);
        up[name] = { uri: res.content_uri, data, type };
    }
    const auth = { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } };
    for (const [name, { uri, data, type }] of Object.entries(up)) {
        const url = bob.mxcUrlToHttp(uri, undefined, undefined, undefined, false, true, true);
        check(url.includes("/_matrix/client/v1/media/download/"), `not an authenticated media URL: ${url}`);
        const r = await fetch(url, auth);
        const got = Buffer.from(await r.arrayBuffer());
        check(r.status === 200, `download ${name}: ${r.status}`);
        check(sha(got) === sha(data), `download ${name}: bytes differ`);
        check(r.headers.get("content-type") === type, `download ${name}: type ${r.headers.get("content-type")}`);
        const unauthed = await fetch(url);
        check(unauthed.status === 401, `download without a token gave ${unauthed.status}`);
    }
    const sizes = [];
    for (const [w, h, method, want] of [[32, 32, "crop", [32, 32]], [96, 96, "crop", [96, 96]], [320, 240, "scale", [320, 160]], [800, 600, "scale", [800, 400]]]) {
        const url = bob.mxcUrlToHttp(up["wide.png"].uri, w, h, method, false, true, true);
        check(url.includes("/_matrix/client/v1/media/thumbnail/"), `not an authenticated thumbnail URL: ${url}`);
        const r = await fetch(url, auth);
        check(r.status === 200, `thumbnail ${w}x${h} ${method}: ${r.status}`);
        const size = pngSize(Buffer.from(await r.arrayBuffer()));
        check(size[0] === want[0] && size[1] === want[1], `thumbnail ${w}x${h} ${method}: got ${size}, want ${want}`);
        sizes.push(size);
    }
    const cfg = await bob.getMediaConfig(true);
    check(cfg["m.upload.size"] > 0, `media config: ${JSON.stringify(cfg)}`);
    process.stdout.write(JSON.stringify({ ok: true, sizes }) + "\n");
}

try {
    await main();
    process.exit(0);
} catch (e) {
    console.error(`FAIL: ${e.stack || e}`);
    process.exit(1);
}
