import { lazy, Suspense, useEffect, useState } from "react";
import SignIn from "./SignIn.jsx";
import { savedSession } from "./auth.js";

// Everything past the sign-in screen (the SDK, the crypto engine, the chat) loads on its own,
// and starts loading as soon as the sign-in screen shows: a slow link draws the form first.
const loadSession = () => import("./Session.jsx");
const Session = lazy(loadSession);

export default function App() {
  const [session, setSession] = useState(savedSession);
  const [setup, setSetup] = useState(null);

  useEffect(() => {
    loadSession();
    // The crypto engine (WebAssembly, most of the bytes) downloads and compiles while the user
    // types; matrix-js-sdk's initRustCrypto then finds it ready.
    import("@matrix-org/matrix-sdk-crypto-wasm").then((m) => m.initAsync()).catch(() => {});
  }, []);

  function signedIn(s, password, fresh) {
    setSetup({ password, fresh });
    setSession(s);
  }

  if (!session) return <SignIn onSession={signedIn} />;
  return (
    <Suspense fallback={<div className="signin"><p className="muted">Loading…</p></div>}>
      <Session session={session} setup={setup} onSignedOut={() => { setSession(null); setSetup(null); }} />
    </Suspense>
  );
}
