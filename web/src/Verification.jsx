import { useEffect, useRef, useState } from "react";
import { VerificationPhase, VerificationRequestEvent, VerifierEvent } from "matrix-js-sdk/lib/crypto-api/index.js";

// The sessions of a user, each of which can be verified with emoji (SAS).
export function VerifyPanel({ client, userId, onClose, onRequest }) {
  const [devices, setDevices] = useState([]);
  const [status, setStatus] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    const crypto = client.getCrypto();
    crypto.getUserDeviceInfo([userId], true).then((map) => setDevices([...(map.get(userId)?.values() || [])]));
    crypto.getUserVerificationStatus(userId).then(setStatus);
  }, [client, userId]);

  async function verify(deviceId) {
    try {
      onRequest(await client.getCrypto().requestDeviceVerification(userId, deviceId));
    } catch (e) {
      setError(e.message);
    }
  }

  return (
    <div className="modal-back">
      <div className="card modal" data-testid="verify-panel">
        <h2>{userId}</h2>
        <p>{status?.isCrossSigningVerified() ? "✅ Verified" : "Not verified yet: compare emoji with one of their sessions."}</p>
        <ul className="sessions">
          {devices.map((d) => (
            <li key={d.deviceId}>
              <b>{d.displayName || d.deviceId}</b> <span className="muted">{d.deviceId}</span>{" "}
              <button onClick={() => verify(d.deviceId)} data-testid={`verify-device-${d.deviceId}`}>Verify</button>
            </li>
          ))}
        </ul>
        {error && <p className="error">{error}</p>}
        <div className="row"><button onClick={onClose}>Close</button></div>
      </div>
    </div>
  );
}

// A verification request, incoming or ours, until it is done or cancelled.
export function IncomingVerification({ request, onClose }) {
  const [, setTick] = useState(0);
  const [sas, setSas] = useState(null);
  const [confirmed, setConfirmed] = useState(false);
  const watched = useRef(null);

  useEffect(() => {
    const bump = () => setTick((t) => t + 1);
    request.on(VerificationRequestEvent.Change, bump);
    return () => request.off(VerificationRequestEvent.Change, bump);
  }, [request]);

  // Either side may start SAS; whoever did not still has to run its verifier.
  const verifier = request.verifier;
  useEffect(() => {
    if (!verifier || watched.current === verifier) return;
    watched.current = verifier;
    verifier.on(VerifierEvent.ShowSas, (s) => setSas(s));
    verifier.verify().catch(() => {});
  }, [verifier]);

  const phase = request.phase;
  const other = request.otherUserId;
  return (
    <div className="modal-back">
      <div className="card modal" data-testid="verification">
        <h2>Verify {other}</h2>
        {phase === VerificationPhase.Requested && !request.initiatedByMe && (
          <>
            <p>{other} wants to verify this session.</p>
            <div className="row">
              <button onClick={() => request.cancel().then(onClose)}>Decline</button>
              <button className="primary" onClick={() => request.accept()} data-testid="verification-accept">Accept</button>
            </div>
          </>
        )}
        {phase === VerificationPhase.Requested && request.initiatedByMe && <p>Waiting for the other session to accept…</p>}
        {phase === VerificationPhase.Ready && (
          <>
            <p>Compare unique emoji shown on both screens.</p>
            <button className="primary" onClick={() => request.startVerification("m.sas.v1")} data-testid="verification-start">Verify by emoji</button>
          </>
        )}
        {phase === VerificationPhase.Started && !sas && <p>Waiting for the other side…</p>}
        {phase === VerificationPhase.Started && sas && (
          <>
            <p>Do these emoji appear on the other screen, in the same order?</p>
            <ol className="emoji" data-testid="sas-emoji">
              {sas.sas.emoji.map(([emoji, name], i) => (
                <li key={i} data-name={name}><span>{emoji}</span><small>{name}</small></li>
              ))}
            </ol>
            {confirmed ? <p>Waiting for the other side to confirm…</p> : (
              <div className="row">
                <button onClick={() => sas.mismatch()}>They don't match</button>
                <button className="primary" onClick={() => { setConfirmed(true); sas.confirm(); }} data-testid="sas-match">They match</button>
              </div>
            )}
          </>
        )}
        {phase === VerificationPhase.Done && (
          <>
            <p data-testid="verification-done">✅ Verified {other}</p>
            <button className="primary" onClick={onClose} data-testid="verification-close">Done</button>
          </>
        )}
        {phase === VerificationPhase.Cancelled && (
          <>
            <p className="error">Verification cancelled{request.cancellationCode ? ` (${request.cancellationCode})` : ""}.</p>
            <button onClick={onClose}>Close</button>
          </>
        )}
      </div>
    </div>
  );
}
