// Session, sign-in, registration and encryption set-up around one matrix-js-sdk client.
import { createClient, ClientEvent } from "matrix-js-sdk";
import { decodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/recovery-key.js";

const SESSION_KEY = "veche.session";
const HS_KEY = "veche.homeserver";

// The server that served this page; another one only when the user asked for it.
export function homeserverUrl() {
  return localStorage.getItem(HS_KEY) || window.location.origin;
}

export function setHomeserverUrl(url) {
  const clean = (url || "").trim().replace(/\/+$/, "");
  if (!clean || clean === window.location.origin) localStorage.removeItem(HS_KEY);
  else localStorage.setItem(HS_KEY, clean);
}

export function savedSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function saveSession(s) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

// The recovery key of this tab: secret storage asks for it while bootstrapping and restoring.
const secretKey = { keyId: null, privateKey: null };

export function useRecoveryKey(text) {
  secretKey.privateKey = decodeRecoveryKey(text.trim());
  secretKey.keyId = null;
}

export async function loginWithPassword(baseUrl, user, password) {
  const bare = createClient({ baseUrl });
  const res = await bare.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: "Veche web",
  });
  const session = { baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
  saveSession(session);
  return session;
}

// The stages the server wants for registration, e.g. ["m.login.registration_token"].
// (Some servers check the request's fields before answering with the flows: send plausible ones.)
export async function registrationFlow(baseUrl, probe = { password: "flows-probe-only" }) {
  const res = await fetch(`${baseUrl}/_matrix/client/v3/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(probe),
  });
  const body = await res.json();
  if (res.status === 403) throw new Error(body.error || "Registration is closed on this server");
  if (res.status !== 401) throw new Error(body.error || `Unexpected answer ${res.status}`);
  const flows = (body.flows || []).map((f) => f.stages || []);
  const usable = flows.find((s) => s.every((t) => t === "m.login.dummy" || t === "m.login.registration_token"));
  if (!usable) throw new Error("This server asks for registration steps this client cannot do");
  return { session: body.session, stages: usable };
}

export async function register(baseUrl, username, password, token) {
  const body = { username, password, initial_device_display_name: "Veche web" };
  const { session, stages } = await registrationFlow(baseUrl, body);
  const bare = createClient({ baseUrl });
  let res = null;
  const todo = stages.length ? stages : ["m.login.dummy"];
  for (const stage of todo) {
    const auth = stage === "m.login.registration_token" ? { type: stage, token, session } : { type: stage, session };
    try {
      res = await bare.registerRequest({ ...body, auth });
    } catch (e) {
      if (e.httpStatus === 401 && e.data && e.data.completed) continue;
      throw e;
    }
  }
  const s = { baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
  saveSession(s);
  return s;
}

export async function startClient(session) {
  const client = createClient({
    baseUrl: session.baseUrl,
    userId: session.userId,
    accessToken: session.accessToken,
    deviceId: session.deviceId,
    timelineSupport: true,
    cryptoCallbacks: {
      getSecretStorageKey: async ({ keys }) => {
        if (!secretKey.privateKey) return null;
        const ids = Object.keys(keys);
        const keyId = ids.find((k) => k === secretKey.keyId) || ids[0];
        return [keyId, secretKey.privateKey];
      },
      cacheSecretStorageKey: (keyId, _info, privateKey) => {
        secretKey.keyId = keyId;
        secretKey.privateKey = privateKey;
      },
    },
  });
  await client.initRustCrypto({ useIndexedDB: true, cryptoDatabasePrefix: `veche-${session.deviceId}` });
  const ready = new Promise((resolve) => {
    const onSync = (state) => {
      if (state === "PREPARED" || state === "SYNCING") {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  await client.startClient({ initialSyncLimit: 30, lazyLoadMembers: true });
  // Not awaited here: offline, the app opens on the last-seen rooms and syncs when it can.
  client.vecheReady = ready;
  return client;
}

// Cross-signing, secret storage and key backup for an account that has none: the answer is the
// recovery key the user must write down.
export async function setUpEncryption(client, password) {
  await client.vecheReady;
  const crypto = client.getCrypto();
  const userId = client.getUserId();
  await crypto.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
    },
  });
  const recovery = await crypto.createRecoveryKeyFromPassphrase();
  await crypto.bootstrapSecretStorage({
    createSecretStorageKey: async () => recovery,
    setupNewSecretStorage: true,
    setupNewKeyBackup: true,
  });
  return recovery.encodedPrivateKey;
}

// Whether the account already has secret storage (then a new session asks for the recovery key).
export async function accountHasRecovery(client) {
  await client.vecheReady;
  const keyId = await client.secretStorage.getDefaultKeyId();
  return Boolean(keyId);
}

// A new session with the recovery key: trust it via cross-signing and read history from backup.
export async function restoreWithRecoveryKey(client, text) {
  useRecoveryKey(text);
  const crypto = client.getCrypto();
  await crypto.bootstrapCrossSigning({});
  await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
  await crypto.checkKeyBackupAndEnable();
  return crypto.restoreKeyBackup();
}

export async function signOut(client) {
  try {
    await client.logout(true);
  } catch {
    /* the session is gone locally even if the server did not answer */
  }
  client.stopClient();
  await client.clearStores();
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem("veche.lastRooms");
}
