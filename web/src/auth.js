// Sign-in and registration with plain fetch: the sign-in screen loads without matrix-js-sdk and
// its crypto, which follow while the user types (see App.jsx).
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

export function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
}

function keep(baseUrl, res) {
  const session = { baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

class ServerError extends Error {
  constructor(status, body) {
    super(body.error || `The server answered ${status}`);
    this.httpStatus = status;
    this.data = body;
  }
}

async function post(baseUrl, path, body) {
  const res = await fetch(`${baseUrl}/_matrix/client/v3/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await res.json();
  } catch {
    /* not JSON: keep the status */
  }
  return { status: res.status, data };
}

export async function loginWithPassword(baseUrl, user, password) {
  const { status, data } = await post(baseUrl, "login", {
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: "Veche web",
  });
  if (status !== 200) throw new ServerError(status, data);
  return keep(baseUrl, data);
}

// The stages the server wants for registration, e.g. ["m.login.registration_token"].
// (Some servers check the request's fields before answering with the flows: send plausible ones.)
export async function registrationFlow(baseUrl, probe = { password: "flows-probe-only" }) {
  const { status, data } = await post(baseUrl, "register", probe);
  if (status === 403) throw new Error(data.error || "Registration is closed on this server");
  if (status !== 401) throw new ServerError(status, data);
  const flows = (data.flows || []).map((f) => f.stages || []);
  const usable = flows.find((s) => s.every((t) => t === "m.login.dummy" || t === "m.login.registration_token"));
  if (!usable) throw new Error("This server asks for registration steps this client cannot do");
  return { session: data.session, stages: usable.length ? usable : ["m.login.dummy"] };
}

export async function register(baseUrl, username, password, token) {
  const body = { username, password, initial_device_display_name: "Veche web" };
  const { session, stages } = await registrationFlow(baseUrl, body);
  for (const stage of stages) {
    const auth = stage === "m.login.registration_token" ? { type: stage, token, session } : { type: stage, session };
    const { status, data } = await post(baseUrl, "register", { ...body, auth });
    if (status === 200) return keep(baseUrl, data);
    if (status !== 401 || !(data.completed || []).includes(stage)) throw new ServerError(status, data);
  }
  throw new Error("Registration did not complete");
}
