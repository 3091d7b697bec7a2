// What the web client knows: the client module's connection, the chats, the loaded messages,
// members' read and delivered marks, who is typing. Views read it; events and actions change it
// and call `changed()`, which redraws once per turn of the event loop however many changes came.
import { ReverbClient } from "/web/reverb-client.js";

export const rc = new ReverbClient();

export const state = {
  chats: new Map(), // id -> Chat
  stores: new Map(), // chat id -> {byId: Map(id -> Message), hasMore, loading}
  members: new Map(), // chat id -> Map(user id -> {user, role, last_read_seq, last_delivered_seq})
  typing: new Map(), // chat id -> Map(user id -> timer)
  media: new Map(), // media id -> Media uploaded from this page (for bubbles still sending)
  current: null, // id of the open chat
  replyTo: null, // Message being answered
  editing: null, // Message being edited
  picker: null, // id of the message whose reaction picker is open
};

// A `typing` notice is repeated at most every 2 s while someone types (server-side coalescing),
// so 5 s without one means they stopped.
const TYPING_SHOWN_MS = 5000;

const views = [];
let scheduled = false;

export function onChange(view) {
  views.push(view);
}

export function changed() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    for (const view of views) view();
  });
}

export const list = (page) => (Array.isArray(page) ? page : page?.items || []);

// Every item of a paged list, following `next_cursor`; `fetchPage(cursor)` asks for one page
// (no cursor: the first) and `onPage(items)` sees each page as it comes.
export async function everyPage(fetchPage, onPage = () => {}) {
  const items = [];
  let cursor;
  do {
    const page = await fetchPage(cursor);
    onPage(list(page));
    items.push(...list(page));
    cursor = page?.next_cursor;
  } while (cursor);
  return items;
}
export const me = () => rc.user;

export function reset() {
  clearMarks();
  for (const key of Object.keys(state)) {
    if (state[key] instanceof Map) state[key].clear();
    else state[key] = null;
  }
}

export function sortedChats() {
  const at = (c) => c.last_message?.created_at || c.updated_at || c.created_at;
  return [...state.chats.values()].sort((a, b) => (at(a) < at(b) ? 1 : at(a) > at(b) ? -1 : 0));
}

// All of a chat's members, every page: the read and delivered marks of a message count each one.
export async function loadMembers(chatId) {
  const members = await everyPage((cursor) => rc.members(chatId, { cursor }));
  state.members.set(chatId, new Map(members.map((m) => [m.user.id, m])));
  return members;
}

export function store(chatId) {
  let s = state.stores.get(chatId);
  if (!s) {
    s = { byId: new Map(), hasMore: false, loading: false, loaded: false };
    state.stores.set(chatId, s);
  }
  return s;
}

export function putMessage(m) {
  const s = state.stores.get(m.chat_id);
  if (s) s.byId.set(m.id, m);
  const chat = state.chats.get(m.chat_id);
  if (!chat) return;
  if (!chat.last_message || chat.last_message.seq <= m.seq) chat.last_message = m;
  chat.last_seq = Math.max(chat.last_seq || 0, m.seq);
}

export function messagesOf(chatId) {
  const s = state.stores.get(chatId);
  return s ? [...s.byId.values()].sort((a, b) => a.seq - b.seq) : [];
}

export function findMessage(chatId, id) {
  return state.stores.get(chatId)?.byId.get(id);
}

export function applyReaction(e) {
  const m = findMessage(e.chat_id, e.message_id);
  if (!m) return;
  const mine = e.user_id === me()?.id;
  const reactions = m.reactions.map((r) => ({ ...r }));
  let r = reactions.find((x) => x.emoji === e.emoji);
  if (!r) reactions.push((r = { emoji: e.emoji, count: 0, me: false }));
  r.count += e.added ? 1 : -1;
  if (mine) r.me = e.added;
  m.reactions = reactions.filter((x) => x.count > 0);
}

export function setTyping(chatId, userId, on) {
  let users = state.typing.get(chatId);
  if (!users) state.typing.set(chatId, (users = new Map()));
  clearTimeout(users.get(userId));
  if (!on) {
    users.delete(userId);
    return;
  }
  users.set(
    userId,
    setTimeout(() => {
      users.delete(userId);
      changed();
    }, TYPING_SHOWN_MS),
  );
}

// Marks of the other members: a message is read (delivered) once every other member has read
// (received) the chat up to its seq.
export function receipt(chatId, seq) {
  const members = state.members.get(chatId);
  const others = members ? [...members.values()].filter((m) => m.user.id !== me()?.id) : [];
  if (!others.length) return "sent";
  if (others.every((m) => (m.last_read_seq || 0) >= seq)) return "read";
  if (others.every((m) => (m.last_delivered_seq || 0) >= seq)) return "delivered";
  return "sent";
}

export function updateMarker(e) {
  const member = state.members.get(e.chat_id)?.get(e.user_id);
  if (member) {
    member.last_delivered_seq = Math.max(member.last_delivered_seq || 0, e.seq);
    if (e.type === "read") member.last_read_seq = Math.max(member.last_read_seq || 0, e.seq);
  }
  const chat = state.chats.get(e.chat_id);
  if (chat && e.type === "read" && e.user_id === me()?.id && e.seq >= chat.last_seq) {
    chat.unread_count = 0;
  }
}

export function userEverywhere(userId, change) {
  for (const chat of state.chats.values()) if (chat.peer?.id === userId) Object.assign(chat.peer, change);
  for (const members of state.members.values()) {
    const m = members.get(userId);
    if (m) Object.assign(m.user, change);
  }
}

export function chatTitle(chat) {
  return chat.type === "direct" ? chat.peer?.display_name || chat.peer?.username || "Direct chat" : chat.name;
}

// Read and delivered marks are gathered for a moment and go out as one of each per chat, for the
// highest seq: a catch-up of hundreds of messages sends a few frames, far below the server's
// marker limit (20 a second), and a person sees the receipt no later than they would notice.
// They go only over the socket: while it is down they wait, and go out when it is back, instead
// of failing as requests on a network that is gone.
const MARKS_GATHER_MS = 150;
const marks = { read: new Map(), delivered: new Map() };
let marksTimer = null;

export function mark(kind, chatId, seq) {
  const pending = marks[kind];
  pending.set(chatId, Math.max(pending.get(chatId) || 0, seq));
  flushMarks();
}

export function flushMarks() {
  if (marksTimer || rc.status !== "online") return;
  marksTimer = setTimeout(() => {
    marksTimer = null;
    if (rc.status !== "online") return;
    // Should the socket drop just now, the module sends the mark as a request instead; if that
    // fails too, the next mark covers it.
    for (const [id, s] of marks.delivered) rc.markDelivered(id, s).catch(() => {});
    for (const [id, s] of marks.read) rc.markRead(id, s).catch(() => {});
    clearMarks();
  }, MARKS_GATHER_MS);
}

export function clearMarks() {
  marks.delivered.clear();
  marks.read.clear();
}
