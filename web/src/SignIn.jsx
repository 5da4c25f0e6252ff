import { useEffect, useState } from "react";
import { homeserverUrl, loginWithPassword, register, registrationFlow, setHomeserverUrl } from "./auth.js";

export default function SignIn({ onSession }) {
  const [mode, setMode] = useState("signin");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [needsToken, setNeedsToken] = useState(false);
  const [server, setServer] = useState(homeserverUrl());
  const [showServer, setShowServer] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    if (mode !== "register") return;
    registrationFlow(server)
      .then((f) => setNeedsToken(f.stages.includes("m.login.registration_token")))
      .catch((e) => setError(e.message));
  }, [mode, server]);

  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      setHomeserverUrl(server);
      const baseUrl = homeserverUrl();
      const session = mode === "signin"
        ? await loginWithPassword(baseUrl, user.trim(), password)
        : await register(baseUrl, user.trim(), password, token.trim());
      onSession(session, password, mode === "register");
    } catch (err) {
      setError((err.data && err.data.error) || err.message || String(err));
      setBusy(false);
    }
  }

  return (
    <div className="signin">
      <form className="card" onSubmit={submit}>
        <h1>Veche</h1>
        <div className="tabs">
          <button type="button" className={mode === "signin" ? "on" : ""} onClick={() => setMode("signin")}>Sign in</button>
          <button type="button" className={mode === "register" ? "on" : ""} onClick={() => setMode("register")} data-testid="tab-register">Create account</button>
        </div>
        <label>Username<input name="username" autoComplete="username" value={user} onChange={(e) => setUser(e.target.value)} required /></label>
        <label>Password<input name="password" type="password" autoComplete={mode === "signin" ? "current-password" : "new-password"} value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        {mode === "register" && needsToken && (
          <label>Registration token<input name="token" value={token} onChange={(e) => setToken(e.target.value)} required /></label>
        )}
        {showServer ? (
          <label>Homeserver<input name="homeserver" value={server} onChange={(e) => setServer(e.target.value)} /></label>
        ) : (
          <p className="muted">Server: {server} <button type="button" className="link" onClick={() => setShowServer(true)}>change</button></p>
        )}
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" className="primary" disabled={busy} data-testid="submit">
          {busy ? "Please wait…" : mode === "signin" ? "Sign in" : "Create account"}
        </button>
      </form>
    </div>
  );
}
