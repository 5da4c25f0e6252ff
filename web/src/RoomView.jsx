import { Fragment, useEffect, useLayoutEffect, useRef, useState } from "react";
import { fetchAttachment, sendFile, thumbnailBlob } from "./media.js";

const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉"];

function relation(ev) {
  return ev.getContent()["m.relates_to"] || ev.getWireContent()["m.relates_to"] || null;
}

// The timeline as people read it: edits folded into their message, reactions counted under it.
function aggregate(events) {
  const edits = new Map();
  const reactions = new Map();
  const threads = new Map();
  const shown = [];
  for (const ev of events) {
    const rel = relation(ev);
    const type = ev.getType();
    if (type === "m.room.redaction") continue;
    if (type === "m.reaction") {
      if (ev.isRedacted() || !rel?.event_id) continue;
      const byKey = reactions.get(rel.event_id) || new Map();
      const list = byKey.get(rel.key) || [];
      list.push(ev);
      byKey.set(rel.key, list);
      reactions.set(rel.event_id, byKey);
      continue;
    }
    if (rel?.rel_type === "m.replace" && !ev.isRedacted()) {
      edits.set(rel.event_id, ev);
      continue;
    }
    if (rel?.rel_type === "m.thread" && rel.event_id) {
      threads.set(rel.event_id, [...(threads.get(rel.event_id) || []), ev]);
      continue;
    }
    shown.push(ev);
  }
  return { shown, edits, reactions, threads };
}

function Attachment({ client, content }) {
  const [thumb, setThumb] = useState(null);
  const [error, setError] = useState("");
  const isImage = content.msgtype === "m.image";
  useEffect(() => {
    if (!isImage) return undefined;
    let url = null;
    thumbnailBlob(client, content).then((b) => {
      url = URL.createObjectURL(b);
      setThumb(url);
    }).catch((e) => setError(e.message));
    return () => url && URL.revokeObjectURL(url);
  }, [client, content, isImage]);

  async function download() {
    const blob = await fetchAttachment(client, content.file, content.url, content.info?.mimetype);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = content.body || "download";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  const info = content.info?.thumbnail_info || content.info || {};
  return (
    <div className="attachment">
      {isImage && (thumb
        ? <img src={thumb} alt={content.body} width={info.w} height={info.h} data-testid="thumbnail" />
        : <div className="thumb-placeholder" style={{ width: info.w || 160, height: info.h || 120 }}>{error || "…"}</div>)}
      <button className="link" onClick={download} data-testid="download">⬇ {content.body}</button>
    </div>
  );
}

function Body({ client, ev, content }) {
  if (ev.isRedacted()) return <i className="muted">Message deleted</i>;
  if (ev.isDecryptionFailure()) return <i className="muted" data-testid="undecryptable">🔒 Unable to decrypt this message</i>;
  if (ev.getType() === "m.room.encrypted") return <i className="muted">Decrypting…</i>;
  if (content.msgtype === "m.image" || content.msgtype === "m.file") return <Attachment client={client} content={content} />;
  return <span className="text" data-testid="body">{content.body}</span>;
}

function nameOf(room, userId) {
  return room.getMember(userId)?.name || userId;
}

function stateText(room, ev) {
  const c = ev.getContent();
  const who = nameOf(room, ev.getStateKey());
  const sender = nameOf(room, ev.getSender());
  switch (ev.getType()) {
    case "m.room.member":
      return { join: `${who} joined`, invite: `${sender} invited ${who}`, leave: ev.getSender() === ev.getStateKey() ? `${who} left` : `${sender} removed ${who}`, ban: `${who} was banned` }[c.membership] || null;
    case "m.room.encryption":
      return "Messages here are end-to-end encrypted";
    case "m.room.name":
      return `Room name: ${c.name}`;
    case "m.room.create":
      return `${sender} created the room`;
    default:
      return null;
  }
}

function Tile({ client, room, ev, edit, reactions, onReply, onEdit, replies, onThread }) {
  const me = client.getUserId();
  const content = edit ? edit.getContent()["m.new_content"] || edit.getContent() : ev.getContent();
  const rel = relation(ev);
  // A thread reply's in_reply_to is only a fallback for clients without threads.
  const replyTo = rel?.rel_type === "m.thread" && rel.is_falling_back ? null : rel?.["m.in_reply_to"]?.event_id;
  const quoted = replyTo ? room.findEventById(replyTo) : null;
  const mine = ev.getSender() === me;

  async function react(key) {
    const own = reactions?.get(key)?.find((r) => r.getSender() === me);
    if (own) await client.redactEvent(room.roomId, own.getId());
    else await client.sendEvent(room.roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: ev.getId(), key } });
  }

  return (
    <li className={`tile ${mine ? "mine" : ""}`} data-testid="message" data-event-id={ev.getId()} data-sender={ev.getSender()}>
      <div className="sender" title={ev.getSender()}>{nameOf(room, ev.getSender())}</div>
      {quoted && (
        <blockquote className="reply" data-testid="reply-quote">
          <b>{nameOf(room, quoted.getSender())}</b> {quoted.isRedacted() ? "(deleted)" : quoted.getContent().body}
        </blockquote>
      )}
      <Body client={client} ev={ev} content={content} />
      {edit && !ev.isRedacted() && <small className="muted" data-testid="edited"> (edited)</small>}
      {reactions && reactions.size > 0 && (
        <div className="reactions">
          {[...reactions.entries()].map(([key, list]) => (
            <button key={key} className={list.some((r) => r.getSender() === me) ? "on" : ""} onClick={() => react(key)} title={list.map((r) => r.getSender()).join(", ")} data-testid="reaction">
              {key} {list.length}
            </button>
          ))}
        </div>
      )}
      {replies > 0 && onThread && (
        <button className="link thread-link" onClick={() => onThread(ev)} data-testid="thread-summary">💬 {replies} {replies === 1 ? "reply" : "replies"}</button>
      )}
      {!ev.isRedacted() && ev.getId()?.startsWith("$") && (
        <div className="tile-actions">
          {QUICK_REACTIONS.map((k) => <button key={k} onClick={() => react(k)} data-testid={`react-${k}`}>{k}</button>)}
          <button onClick={() => onReply(ev)} data-testid="reply">Reply</button>
          {onThread && <button onClick={() => onThread(ev)} data-testid="thread">Thread</button>}
          {mine && content.msgtype === "m.text" && <button onClick={() => onEdit(ev, content.body)} data-testid="edit">Edit</button>}
          {mine && <button onClick={() => client.redactEvent(room.roomId, ev.getId())} data-testid="delete">Delete</button>}
        </div>
      )}
    </li>
  );
}

function Composer({ client, room, replyTo, editing, onDone, threadRoot, threadLast }) {
  const [text, setText] = useState("");
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState("");
  const fileInput = useRef(null);
  const typing = useRef(0);

  useEffect(() => {
    if (editing) setText(editing.body);
  }, [editing]);

  function changed(value) {
    setText(value);
    if (Date.now() - typing.current > 3000) {
      typing.current = Date.now();
      client.sendTyping(room.roomId, true, 4000).catch(() => {});
    }
  }

  async function send(e) {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    setText("");
    typing.current = 0;
    client.sendTyping(room.roomId, false, 0).catch(() => {});
    let content = { msgtype: "m.text", body };
    if (editing) {
      content = { msgtype: "m.text", body: `* ${body}`, "m.new_content": content, "m.relates_to": { rel_type: "m.replace", event_id: editing.ev.getId() } };
    } else if (threadRoot) {
      // A thread reply; clients without threads show it as a reply to the thread's last message.
      const last = replyTo || threadLast || threadRoot;
      content["m.relates_to"] = { rel_type: "m.thread", event_id: threadRoot.getId(), is_falling_back: !replyTo, "m.in_reply_to": { event_id: last.getId() } };
    } else if (replyTo) {
      content["m.relates_to"] = { "m.in_reply_to": { event_id: replyTo.getId() } };
    }
    onDone();
    try {
      await client.sendMessage(room.roomId, content);
    } catch (err) {
      setError(err.message);
    }
  }

  async function upload(e) {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    setError("");
    setProgress(0);
    try {
      await sendFile(client, room.roomId, file, (p) => setProgress(p.total ? p.loaded / p.total : 0));
    } catch (err) {
      setError(err.message);
    }
    setProgress(null);
  }

  return (
    <form className="composer" onSubmit={send}>
      {(replyTo || editing) && (
        <div className="composer-context">
          {editing ? "Editing" : `Replying to ${nameOf(room, replyTo.getSender())}`}
          <button type="button" className="link" onClick={() => { onDone(); setText(""); }}>cancel</button>
        </div>
      )}
      {progress !== null && <progress value={progress} max="1" data-testid="upload-progress" />}
      {error && <p className="error">{error}</p>}
      <div className="row">
        <button type="button" onClick={() => fileInput.current.click()} title="Attach a file">📎</button>
        <input ref={fileInput} type="file" hidden onChange={upload} data-testid={threadRoot ? "thread-file-input" : "file-input"} />
        <input className="grow" name="message" placeholder={threadRoot ? "Reply in thread…" : room.hasEncryptionStateEvent() ? "Encrypted message…" : "Message…"} value={text} onChange={(e) => changed(e.target.value)} autoComplete="off" data-testid={threadRoot ? "thread-composer" : "composer"} />
        <button type="submit" className="primary" data-testid={threadRoot ? "thread-send" : "send"}>Send</button>
      </div>
    </form>
  );
}

function ThreadPanel({ client, room, root, replies, edits, reactions, onClose }) {
  const [replyTo, setReplyTo] = useState(null);
  const [editing, setEditing] = useState(null);
  const tile = (ev) => (
    <Tile key={ev.getId() || ev.getTxnId()} client={client} room={room} ev={ev} edit={edits.get(ev.getId())} reactions={reactions.get(ev.getId())}
      onReply={(e) => { setEditing(null); setReplyTo(e); }} onEdit={(e, body) => { setReplyTo(null); setEditing({ ev: e, body }); }} />
  );
  return (
    <aside className="thread" data-testid="thread-panel">
      <header><b>Thread</b><button onClick={onClose} title="Close the thread">✕</button></header>
      <ul className="timeline">
        {tile(root)}
        {replies.map(tile)}
      </ul>
      <Composer client={client} room={room} replyTo={replyTo} editing={editing} threadRoot={root} threadLast={replies[replies.length - 1]}
        onDone={() => { setReplyTo(null); setEditing(null); }} />
    </aside>
  );
}

export default function RoomView({ client, room, onBack, onVerify }) {
  const [replyTo, setReplyTo] = useState(null);
  const [editing, setEditing] = useState(null);
  const [loading, setLoading] = useState(false);
  const [inviting, setInviting] = useState(false);
  const [threadId, setThreadId] = useState(null);
  const [invitee, setInvitee] = useState("");
  // Where the reader had got to when the room was opened (m.fully_read): a "new" line goes
  // after it and stays put while the room is open, as in Element.
  const [readUpTo] = useState(() => room.getAccountData("m.fully_read")?.getContent()?.event_id || null);
  const list = useRef(null);
  const atBottom = useRef(true);

  const timeline = room.getLiveTimeline();
  const events = timeline.getEvents();
  const { shown, edits, reactions, threads } = aggregate(events);
  const threadRoot = threadId ? room.findEventById(threadId) : null;
  const last = events[events.length - 1];
  const me = client.getUserId();
  const others = room.getMembers().filter((m) => m.userId !== me && ["join", "invite"].includes(m.membership));
  const typing = room.getMembers().filter((m) => m.typing && m.userId !== me);
  const canPaginate = timeline.getPaginationToken("b") !== null;

  useEffect(() => {
    if (last && last.getId()?.startsWith("$") && last.getSender() !== me && document.visibilityState === "visible") {
      // The read marker (m.fully_read) and the public receipt in one request.
      client.setRoomReadMarkers(room.roomId, last.getId(), last).catch(() => {});
    }
  }, [client, room, last, me]);

  useLayoutEffect(() => {
    if (atBottom.current && list.current) list.current.scrollTop = list.current.scrollHeight;
  });

  async function older() {
    if (loading || !canPaginate) return;
    setLoading(true);
    const el = list.current;
    const before = el ? el.scrollHeight - el.scrollTop : 0;
    try {
      await client.scrollback(room, 30);
    } finally {
      setLoading(false);
      requestAnimationFrame(() => {
        if (el) el.scrollTop = el.scrollHeight - before;
      });
    }
  }

  function onScroll(e) {
    const el = e.currentTarget;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 20) older();
  }

  async function invite(e) {
    e.preventDefault();
    await client.invite(room.roomId, invitee.trim());
    setInviting(false);
    setInvitee("");
  }

  // The sender has read their own message: only the others say anything.
  const readers = last ? room.getUsersReadUpTo(last).filter((u) => u !== me && u !== last.getSender()) : [];

  return (
    <section className="room">
      <header>
        <button className="back" onClick={onBack} title="Rooms">‹</button>
        <div className="grow">
          <b data-testid="room-name">{room.name}</b>
          {room.hasEncryptionStateEvent() && <span className="badge-enc" title="End-to-end encrypted" data-testid="encrypted"> 🔒</span>}
        </div>
        {others.length === 1 && <button onClick={() => onVerify(others[0].userId)} data-testid="verify-user">Verify</button>}
        <button onClick={() => setInviting(true)}>Invite</button>
        <button onClick={() => client.leave(room.roomId).then(onBack)}>Leave</button>
      </header>
      {inviting && (
        <form className="row invite-form" onSubmit={invite}>
          <input className="grow" placeholder="@someone:server" value={invitee} onChange={(e) => setInvitee(e.target.value)} />
          <button type="submit" className="primary">Invite</button>
          <button type="button" onClick={() => setInviting(false)}>Cancel</button>
        </form>
      )}
      <div className="room-body">
      <div className="main-column">
      <ul className="timeline" ref={list} onScroll={onScroll} data-testid="timeline">
        {canPaginate && <li className="more"><button onClick={older} disabled={loading} data-testid="load-older">{loading ? "Loading…" : "Load older messages"}</button></li>}
        {shown.map((ev, i) => {
          const marker = ev.getId() === readUpTo && i < shown.length - 1
            ? <li className="read-marker" data-testid="read-marker"><span>New</span></li> : null;
          let item = null;
          if (ev.isState()) {
            const text = stateText(room, ev);
            item = text ? <li className="notice muted">{text}</li> : null;
          } else if (["m.room.message", "m.room.encrypted", "m.sticker"].includes(ev.getType())) {
            item = (
              <Tile client={client} room={room} ev={ev} edit={edits.get(ev.getId())} reactions={reactions.get(ev.getId())}
                onReply={(e) => { setEditing(null); setReplyTo(e); }}
                onEdit={(e, body) => { setReplyTo(null); setEditing({ ev: e, body }); }}
                replies={threads.get(ev.getId())?.length || 0} onThread={(e) => setThreadId(e.getId())} />
            );
          }
          return <Fragment key={ev.getId() || ev.getTxnId()}>{item}{marker}</Fragment>;
        })}
        {readers.length > 0 && <li className="receipts muted" data-testid="read-receipts">Seen by {readers.map((u) => nameOf(room, u)).join(", ")}</li>}
      </ul>
      {typing.length > 0 && <div className="typing muted" data-testid="typing">{typing.map((m) => m.name).join(", ")} typing…</div>}
      <Composer client={client} room={room} replyTo={replyTo} editing={editing} onDone={() => { setReplyTo(null); setEditing(null); }} />
      </div>
      {threadRoot && (
        <ThreadPanel client={client} room={room} root={threadRoot} replies={threads.get(threadRoot.getId()) || []} edits={edits} reactions={reactions} onClose={() => setThreadId(null)} />
      )}
      </div>
    </section>
  );
}
