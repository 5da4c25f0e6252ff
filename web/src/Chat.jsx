import { useCallback, useEffect, useRef, useState } from "react";
import { ClientEvent, EventType, NotificationCountType, RoomEvent, RoomMemberEvent, MatrixEventEvent, Preset, Visibility } from "matrix-js-sdk";
import { CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import RoomView from "./RoomView.jsx";
import { IncomingVerification, VerifyPanel } from "./Verification.jsx";

const LAST_ROOMS = "veche.lastRooms";
const ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };

// One re-render per animation frame whatever the SDK reports: enough for a chat window.
export function useClientTick(client) {
  const [, setTick] = useState(0);
  useEffect(() => {
    let queued = false;
    const bump = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        setTick((t) => t + 1);
      });
    };
    const events = [ClientEvent.Sync, ClientEvent.Room, ClientEvent.DeleteRoom, ClientEvent.AccountData, RoomEvent.Timeline, RoomEvent.Redaction, RoomEvent.Name, RoomEvent.Receipt, RoomEvent.UnreadNotifications, RoomEvent.LocalEchoUpdated, RoomEvent.MyMembership, RoomEvent.TimelineReset, RoomMemberEvent.Membership, RoomMemberEvent.Typing, MatrixEventEvent.Decrypted, MatrixEventEvent.Replaced];
    for (const e of events) client.on(e, bump);
    return () => {
      for (const e of events) client.off(e, bump);
    };
  }, [client]);
}

function directRoomIds(client) {
  const content = client.getAccountData(EventType.Direct)?.getContent() || {};
  return new Set(Object.values(content).flat());
}

async function markDirect(client, userId, roomId) {
  const content = { ...(client.getAccountData(EventType.Direct)?.getContent() || {}) };
  const rooms = new Set(content[userId] || []);
  rooms.add(roomId);
  content[userId] = [...rooms];
  await client.setAccountData(EventType.Direct, content);
}

function inviterOf(room, me) {
  const ev = room.getMember(me)?.events.member;
  return { sender: ev?.getSender(), isDirect: Boolean(ev?.getContent().is_direct) };
}

function NewRoomDialog({ client, direct, onClose, onCreated }) {
  const [name, setName] = useState("");
  const [userId, setUserId] = useState("");
  const [alias, setAlias] = useState("");
  const [encrypted, setEncrypted] = useState(true);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function create(e) {
    e.preventDefault();
    setBusy(true);
    try {
      const invite = userId.trim() ? [userId.trim()] : [];
      const opts = direct
        ? { is_direct: true, invite, preset: Preset.TrustedPrivateChat, initial_state: [ENCRYPTION] }
        : { name: name.trim(), invite, preset: encrypted ? Preset.PrivateChat : Preset.PublicChat, visibility: Visibility.Private, initial_state: encrypted ? [ENCRYPTION] : [] };
      if (!direct && alias.trim()) opts.room_alias_name = alias.trim().replace(/^#/, "").replace(/:.*$/, "");
      const { room_id: roomId } = await client.createRoom(opts);
      if (direct) await markDirect(client, invite[0], roomId);
      onCreated(roomId);
    } catch (err) {
      setError(err.data?.error || err.message);
      setBusy(false);
    }
  }

  return (
    <div className="modal-back">
      <form className="card modal" onSubmit={create}>
        <h2>{direct ? "Start a direct chat" : "New room"}</h2>
        {!direct && <label>Name<input name="room-name" value={name} onChange={(e) => setName(e.target.value)} required /></label>}
        <label>{direct ? "User ID" : "Invite (optional)"}<input name="user-id" placeholder="@someone:server" value={userId} onChange={(e) => setUserId(e.target.value)} required={direct} /></label>
        {!direct && <label>Address (optional)<input name="room-alias" placeholder="lobby" value={alias} onChange={(e) => setAlias(e.target.value)} /></label>}
        {!direct && <label className="check"><input type="checkbox" checked={encrypted} onChange={(e) => setEncrypted(e.target.checked)} /> Private and end-to-end encrypted</label>}
        {error && <p className="error" role="alert">{error}</p>}
        <div className="row">
          <button type="button" onClick={onClose}>Cancel</button>
          <button type="submit" className="primary" disabled={busy} data-testid="create">{direct ? "Start chat" : "Create"}</button>
        </div>
      </form>
    </div>
  );
}

// "#room:server", "!id:server" or a matrix.to link to either (with its ?via= servers).
export function parseRoomAddress(text) {
  let target = text.trim();
  let via = [];
  const link = target.match(/^(?:https?:\/\/)?matrix\.to\/#\/([^?]+)(?:\?(.*))?$/);
  if (link) {
    target = decodeURIComponent(link[1]).split("/")[0];
    via = new URLSearchParams(link[2] || "").getAll("via");
  }
  return { target, via };
}

function JoinField({ client, onJoined }) {
  const [address, setAddress] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function join(e) {
    e.preventDefault();
    const { target, via } = parseRoomAddress(address);
    if (!/^[#!][^:]+:.+$/.test(target)) {
      setError("Give a room address like #room:server or a matrix.to link");
      return;
    }
    setBusy(true);
    setError("");
    try {
      const room = await client.joinRoom(target, via.length ? { viaServers: via } : {});
      setAddress("");
      onJoined(room.roomId);
    } catch (err) {
      setError(err.data?.error || err.message);
    } finally {
      setBusy(false);
    }
  }
  return (
    <form className="join-field" onSubmit={join}>
      <div className="row">
        <input className="grow" name="join" placeholder="#room:server or matrix.to link" value={address} onChange={(e) => setAddress(e.target.value)} aria-label="Room address or link" required />
        <button type="submit" disabled={busy} data-testid="join">Join</button>
      </div>
      {error && <p className="error" role="alert" data-testid="join-error">{error}</p>}
    </form>
  );
}

// Signing another session out needs the account password (user-interactive auth): the first
// request learns the UIA session, the second carries the password with it.
async function signOutDevice(client, deviceId, password) {
  try {
    await client.deleteDevice(deviceId);
  } catch (err) {
    if (err.httpStatus !== 401 || !err.data?.flows) throw err;
    await client.deleteDevice(deviceId, {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: client.getUserId() },
      password,
      session: err.data.session,
    });
  }
}

function SessionItem({ client, device, current, onGone }) {
  const [asking, setAsking] = useState(false);
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function signOut(e) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await signOutDevice(client, device.device_id, password);
      onGone();
    } catch (err) {
      setError(err.data?.error || err.message);
      setBusy(false);
    }
  }
  return (
    <li data-testid="session">
      <b>{device.display_name || device.device_id}</b>{" "}
      <span className="muted">{device.device_id}{device.last_seen_ts ? ` · ${new Date(device.last_seen_ts).toLocaleString()}` : ""}</span>
      {current ? <span className="muted"> (this session)</span> : !asking && <button onClick={() => setAsking(true)} data-testid="session-sign-out">Sign out</button>}
      {asking && (
        <form className="row" onSubmit={signOut}>
          <input className="grow" type="password" name="session-password" placeholder="Your password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
          <button type="submit" className="primary" disabled={busy} data-testid="session-sign-out-confirm">Sign it out</button>
          <button type="button" onClick={() => setAsking(false)}>Cancel</button>
        </form>
      )}
      {error && <p className="error" role="alert">{error}</p>}
    </li>
  );
}

function SettingsDialog({ client, onClose, onSignOut }) {
  const [devices, setDevices] = useState([]);
  const [backup, setBackup] = useState(null);
  const [permission, setPermission] = useState(() => ("Notification" in window ? Notification.permission : "unsupported"));
  const loadDevices = useCallback(() => client.getDevices().then((r) => setDevices(r.devices || [])).catch(() => {}), [client]);
  useEffect(() => {
    loadDevices();
    // How many message keys the server keeps for a new browser: worth knowing before signing out.
    const look = () => client.http.authedRequest("GET", "/room_keys/version").then(setBackup, () => setBackup({ count: null }));
    look();
    const timer = setInterval(look, 2000);
    return () => clearInterval(timer);
  }, [client, loadDevices]);
  const own = client.getDeviceId();
  return (
    <div className="modal-back">
      <div className="card modal" data-testid="settings">
        <h2>Account</h2>
        <p>{client.getUserId()}</p>
        <p className="muted">This session: <span data-testid="own-device-id">{own}</span></p>
        <p data-testid="backup-status">
          {backup === null ? "Key backup: checking…" : backup.count === null ? "Key backup: off" : `Key backup: ${backup.count} message keys saved`}
        </p>
        <h3>Sessions</h3>
        <ul className="sessions" data-testid="sessions">
          {devices.map((d) => <SessionItem key={d.device_id} client={client} device={d} current={d.device_id === own} onGone={loadDevices} />)}
        </ul>
        {permission === "default" && (
          // Browsers only ask on a click; the answer is remembered per site.
          <p><button onClick={() => Notification.requestPermission().then(setPermission)} data-testid="ask-notifications">Notify me of new messages</button></p>
        )}
        {permission === "denied" && <p className="muted">Notifications are blocked for this site in the browser's settings.</p>}
        <div className="row">
          <button onClick={onSignOut} data-testid="sign-out">Sign out</button>
          <button className="primary" onClick={onClose}>Close</button>
        </div>
      </div>
    </div>
  );
}

function lastSeenRooms() {
  try {
    return JSON.parse(localStorage.getItem(LAST_ROOMS) || "[]");
  } catch {
    return [];
  }
}

export default function Chat({ client, onSignOut }) {
  useClientTick(client);
  const [roomId, setRoomId] = useState(() => window.location.hash.replace(/^#\/room\//, "") || null);
  const [dialog, setDialog] = useState(null);
  const [verification, setVerification] = useState(null);

  // Browser notifications while the tab is open, for messages not in view: another room, or
  // this one while the tab is hidden.
  const inView = useRef(roomId);
  inView.current = roomId;
  useEffect(() => {
    const onEvent = async (ev, room, toStart, _removed, data) => {
      if (toStart || !data?.liveEvent || !room || ev.getSender() === client.getUserId()) return;
      // Not the history that the first sync or a reconnection brings: only what arrives now.
      if (!client.isInitialSyncComplete() || ev.getLocalAge() > 60_000) return;
      if (!("Notification" in window) || Notification.permission !== "granted") return;
      if (room.roomId === inView.current && !document.hidden) return;
      if (room.getMyMembership() !== "join") return;
      await client.decryptEventIfNeeded(ev);
      if (ev.getType() !== "m.room.message" || ev.isRelation("m.replace")) return;
      const n = new Notification(room.name || "Veche", { body: `${room.getMember(ev.getSender())?.name || ev.getSender()}: ${ev.getContent().body || ""}`, tag: room.roomId });
      n.onclick = () => {
        window.focus();
        window.location.hash = `#/room/${room.roomId}`;
        setRoomId(room.roomId);
      };
    };
    client.on(RoomEvent.Timeline, onEvent);
    return () => client.off(RoomEvent.Timeline, onEvent);
  }, [client]);

  useEffect(() => {
    const onRequest = (request) => setVerification(request);
    client.on(CryptoEvent.VerificationRequestReceived, onRequest);
    return () => client.off(CryptoEvent.VerificationRequestReceived, onRequest);
  }, [client]);

  function open(id) {
    setRoomId(id);
    setDialog(null);
    window.location.hash = id ? `#/room/${id}` : "";
  }

  const me = client.getUserId();
  const direct = directRoomIds(client);
  const rooms = client.getRooms().filter((r) => ["join", "invite"].includes(r.getMyMembership()));
  const invites = rooms.filter((r) => r.getMyMembership() === "invite");
  const joined = rooms
    .filter((r) => r.getMyMembership() === "join")
    .sort((a, b) => b.getLastActiveTimestamp() - a.getLastActiveTimestamp());
  const syncState = client.getSyncState();
  const offline = syncState === "ERROR" || syncState === "RECONNECTING" || syncState === null;

  useEffect(() => {
    if (joined.length) {
      localStorage.setItem(LAST_ROOMS, JSON.stringify(joined.slice(0, 50).map((r) => ({ roomId: r.roomId, name: r.name }))));
    }
  });

  async function accept(room) {
    const { sender, isDirect } = inviterOf(room, me);
    await client.joinRoom(room.roomId);
    if (isDirect && sender) await markDirect(client, sender, room.roomId);
    open(room.roomId);
  }

  const current = roomId ? client.getRoom(roomId) : null;
  const cached = !joined.length && offline ? lastSeenRooms() : [];

  return (
    <div className={`chat ${current ? "has-room" : ""}`}>
      <aside className="sidebar">
        <header>
          <b title={me}>{me}</b>
          <button onClick={() => setDialog("settings")} title="Account and sessions" data-testid="open-settings">⚙</button>
        </header>
        {offline && <p className="offline" role="status">{syncState === null ? "Connecting…" : "Connection lost — retrying…"}</p>}
        <div className="actions">
          <button onClick={() => setDialog("dm")} data-testid="new-dm">+ Direct chat</button>
          <button onClick={() => setDialog("room")} data-testid="new-room">+ Room</button>
        </div>
        <JoinField client={client} onJoined={open} />
        {invites.length > 0 && <h4>Invites</h4>}
        <ul className="rooms">
          {invites.map((r) => (
            <li key={r.roomId} className="invite" data-testid="invite">
              <span>{r.name}</span>
              <span className="muted">from {inviterOf(r, me).sender}</span>
              <div className="row">
                <button className="primary" onClick={() => accept(r)} data-testid="accept-invite">Accept</button>
                <button onClick={() => client.leave(r.roomId)}>Decline</button>
              </div>
            </li>
          ))}
        </ul>
        <h4>Rooms</h4>
        <ul className="rooms">
          {joined.map((r) => {
            const unread = r.getUnreadNotificationCount(NotificationCountType.Total);
            const mentions = r.getUnreadNotificationCount(NotificationCountType.Highlight);
            return (
              <li key={r.roomId} className={r.roomId === roomId ? "on" : ""} onClick={() => open(r.roomId)} data-testid="room">
                <span className="name">{direct.has(r.roomId) ? "@ " : "# "}{r.name}</span>
                {r.roomId !== roomId && unread > 0 && <span className={`badge ${mentions ? "mention" : ""}`} data-testid="unread">{unread}</span>}
              </li>
            );
          })}
          {cached.map((r) => <li key={r.roomId} className="cached"># {r.name}</li>)}
        </ul>
      </aside>
      <main>
        {current ? (
          <RoomView key={current.roomId} client={client} room={current} onBack={() => open(null)} onVerify={(userId) => setDialog({ verify: userId })} />
        ) : (
          <div className="empty muted">Pick a room, or start a direct chat.</div>
        )}
      </main>
      {(dialog === "dm" || dialog === "room") && <NewRoomDialog client={client} direct={dialog === "dm"} onClose={() => setDialog(null)} onCreated={open} />}
      {dialog === "settings" && <SettingsDialog client={client} onClose={() => setDialog(null)} onSignOut={onSignOut} />}
      {dialog?.verify && <VerifyPanel client={client} userId={dialog.verify} onClose={() => setDialog(null)} onRequest={(r) => { setDialog(null); setVerification(r); }} />}
      {verification && <IncomingVerification request={verification} client={client} onClose={() => setVerification(null)} />}
    </div>
  );
}
