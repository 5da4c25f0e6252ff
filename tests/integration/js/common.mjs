// Helpers shared by the client stories: failures the test reports, timeouts, SDK errors.

import { randomBytes } from "node:crypto";

export class ScenarioError extends Error {}

export function fail(msg) {
    throw new ScenarioError(msg);
}

export function check(cond, msg) {
    if (!cond) fail(msg);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const rand = () => randomBytes(4).toString("hex");

/** An SDK error as one line: HTTP status, errcode, message and response body. */
export function describeError(e) {
    if (!e) return String(e);
    const parts = [];
    if (e.httpStatus) parts.push(`HTTP ${e.httpStatus}`);
    if (e.errcode) parts.push(e.errcode);
    parts.push(e.message || String(e));
    if (e.data && typeof e.data === "object") parts.push(JSON.stringify(e.data).slice(0, 500));
    return parts.join(" ");
}

/** Race a promise against a timeout of `ms`; any failure becomes a ScenarioError naming `what`. */
export async function within(what, promise, ms) {
    let t;
    const timeout = new Promise((_, rej) => {
        t = setTimeout(() => rej(new ScenarioError(`timed out after ${ms} ms: ${what}`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } catch (e) {
        if (e instanceof ScenarioError) throw e;
        throw new ScenarioError(`${what} failed: ${describeError(e)}`);
    } finally {
        clearTimeout(t);
    }
}

/** Register `username` (m.login.dummy) and return a matrix-js-sdk client for it. */
export async function registerClient(sdk, baseUrl, username, password) {
    const url = `${baseUrl}/_matrix/client/v3/register`;
    const body = { username, password };
    const post = (b) => fetch(url, { method: "POST", body: JSON.stringify(b), headers: { "Content-Type": "application/json" } });
    const challenge = await (await post(body)).json();
    const r = await post({ ...body, auth: { type: "m.login.dummy", session: challenge.session } });
    const res = await r.json();
    check(r.status === 200, `register ${username}: ${JSON.stringify(res)}`);
    return sdk.createClient({ baseUrl, accessToken: res.access_token, userId: res.user_id, deviceId: res.device_id });
}

/** matrix-js-sdk with its logging quieted, and console output (which it uses) moved to
 *  stderr, so stdout carries only a story's final JSON line. */
export async function quietSdk(consoleMethods = ["log", "info", "debug", "trace"]) {
    for (const m of consoleMethods) console[m] = (...a) => console.error(...a);
    const sdk = await import("matrix-js-sdk");
    try {
        const { logger } = await import("matrix-js-sdk/lib/logger.js");
        logger.setLevel("error");
    } catch {
        /* not fatal */
    }
    return sdk;
}
