import { useEffect, useState } from "react";
import Chat from "./Chat.jsx";
import { accountHasRecovery, restoreWithRecoveryKey, setUpEncryption, signOut, startClient } from "./matrix.js";

// After sign-in: a new account gets cross-signing, secret storage and key backup (and shows its
// recovery key once); a new session of an existing account is offered to restore with it.
function EncryptionSetup({ client, password, fresh, onDone }) {
  const [stage, setStage] = useState("working");
  const [recoveryKey, setRecoveryKey] = useState("");
  const [entered, setEntered] = useState("");
  const [error, setError] = useState("");
  const [restored, setRestored] = useState(null);

  useEffect(() => {
    (async () => {
      try {
        const has = !fresh && (await accountHasRecovery(client));
        if (has) {
          setStage("restore");
        } else {
          setRecoveryKey(await setUpEncryption(client, password));
          setStage("show");
        }
      } catch (e) {
        setError(e.message || String(e));
        setStage("error");
      }
    })();
  }, [client, password, fresh]);

  async function restore(e) {
    e.preventDefault();
    setStage("restoring");
    setError("");
    try {
      const r = await restoreWithRecoveryKey(client, entered);
      setRestored(r);
      setStage("restored");
    } catch (err) {
      setError(err.message || String(err));
      setStage("restore");
    }
  }

  return (
    <div className="modal-back">
      <div className="card modal" data-testid="encryption-setup">
        {stage === "working" && <p>Setting up encryption…</p>}
        {stage === "show" && (
          <>
            <h2>Your recovery key</h2>
            <p>Write it down or store it in a password manager. A new browser or phone needs it to read your encrypted history.</p>
            <code className="recovery" data-testid="recovery-key">{recoveryKey}</code>
            <button className="primary" onClick={onDone} data-testid="recovery-saved">I saved it</button>
          </>
        )}
        {(stage === "restore" || stage === "restoring") && (
          <form onSubmit={restore}>
            <h2>Confirm it is you</h2>
            <p>Enter your recovery key to read your encrypted history in this browser.</p>
            <input name="recovery" value={entered} onChange={(e) => setEntered(e.target.value)} placeholder="EsT… …" data-testid="recovery-input" />
            {error && <p className="error" role="alert">{error}</p>}
            <div className="row">
              <button type="button" onClick={onDone}>Skip</button>
              <button type="submit" className="primary" disabled={stage === "restoring"} data-testid="recovery-restore">{stage === "restoring" ? "Restoring…" : "Restore"}</button>
            </div>
          </form>
        )}
        {stage === "restored" && (
          <>
            <h2>History restored</h2>
            <p data-testid="restored-count">{restored ? `${restored.imported} message keys restored from backup.` : ""}</p>
            <button className="primary" onClick={onDone} data-testid="restore-done">Continue</button>
          </>
        )}
        {stage === "error" && (
          <>
            <p className="error" role="alert">Encryption set-up failed: {error}</p>
            <button onClick={onDone}>Continue without</button>
          </>
        )}
      </div>
    </div>
  );
}

// Installable, and opens offline on the last-seen rooms (sw.js). Registered only once the SDK and
// its crypto engine have loaded: the worker then copies them from the HTTP cache, where a
// worker started earlier would download them a second time over the same slow link.
function keepOffline() {
  if ("serviceWorker" in navigator && window.isSecureContext) navigator.serviceWorker.register("/sw.js").catch(() => {});
}

// A new account without a display name shows as its full ID in others' room lists: use the
// user name, as most servers do at registration.
async function nameIfNameless(client) {
  const me = client.getUserId();
  const profile = await client.getProfileInfo(me).catch(() => ({}));
  if (!profile.displayname) await client.setDisplayName(me.slice(1).split(":")[0]).catch(() => {});
}

// A signed-in session: matrix-js-sdk, its Rust crypto and the chat screens (a chunk of its own).
export default function Session({ session, setup, onSignedOut }) {
  const [client, setClient] = useState(null);
  const [pending, setPending] = useState(setup);
  const [error, setError] = useState("");

  useEffect(() => {
    let started = null;
    startClient(session).then((c) => {
      started = c;
      setClient(c);
      keepOffline();
      if (setup?.fresh) nameIfNameless(c);
    }).catch((e) => setError(e.message || String(e)));
    return () => started?.stopClient();
  }, [session]);

  async function logout() {
    await signOut(client);
    onSignedOut();
  }

  if (error) return <div className="signin"><p className="error">{error}</p></div>;
  if (!client) return <div className="signin"><p className="muted">Loading…</p></div>;
  return (
    <>
      <Chat client={client} onSignOut={logout} />
      {pending && <EncryptionSetup client={client} password={pending.password} fresh={pending.fresh} onDone={() => setPending(null)} />}
    </>
  );
}
