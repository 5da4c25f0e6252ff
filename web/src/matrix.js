// Session, sign-in, registration and encryption set-up around one matrix-js-sdk client.
import { createClient, ClientEvent } from "matrix-js-sdk";
import { forgetSession } from "./auth.js";
import { decodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/recovery-key.js";

// The recovery key of this tab: secret storage asks for it while bootstrapping and restoring.
const secretKey = { keyId: null, privateKey: null };

export function useRecoveryKey(text) {
  secretKey.privateKey = decodeRecoveryKey(text.trim());
  secretKey.keyId = null;
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
  forgetSession();
  localStorage.removeItem("veche.lastRooms");
}
