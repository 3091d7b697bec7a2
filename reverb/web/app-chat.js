// The open conversation: history with scroll-back, bubbles (sending, sent, delivered, read),
// edits, deletions, reactions, replies, attachments with upload progress, typing.
import { $, h, reconcile, displayName, fillAvatar, time, size, toast, errorText } from "/web/app-util.js";
import {
  rc, state, changed, loadMembers, me, store, putMessage, messagesOf, findMessage, receipt, chatTitle, mark,
} from "/web/app-state.js";

const PAGE = 50;
const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🎉"];
// Within this many pixels of the bottom the view follows new messages; further up, the reader
// is reading history and is left where they are.
const FOLLOW_PX = 80;
// `typing` goes out at most this often while someone types (the server coalesces to 2 s anyway).
const TYPING_EVERY_MS = 2000;

const uploads = []; // {key, name, size, loaded, media, error, preview}
let uploadSeq = 0;
let lastTyping = 0;

export function isVisible(chatId) {
  return state.current === chatId && document.visibilityState === "visible";
}

export async function openChat(id, { focus = true } = {}) {
  if (state.current !== id) {
    state.current = id;
    state.replyTo = state.editing = state.picker = null;
    $("messages").replaceChildren();
  }
  document.body.classList.add("in-chat");
  $("composer").hidden = false;
  changed();
  if (focus) $("text").focus();
  const s = store(id);
  const chat = state.chats.get(id);
  if (!s.loaded && !s.loading) {
    s.loading = true;
    try {
      const [page] = await Promise.all([rc.history(id, { limit: PAGE }), loadMembers(id)]);
      for (const m of page.items) s.byId.set(m.id, m);
      s.hasMore = page.has_more;
      s.loaded = true;
      const last = page.items.at(-1);
      if (last) rc.track(id, last.seq);
    } catch (err) {
      toast(errorText(err));
    } finally {
      s.loading = false;
    }
    stickToBottom = true;
    changed();
  }
  if (chat && chat.last_seq > (chat.last_read_seq || 0)) {
    mark("read", id, chat.last_seq);
    chat.last_read_seq = chat.last_seq;
  }
  if (chat) chat.unread_count = 0;
  changed();
}

export function closeChat() {
  state.current = null;
  document.body.classList.remove("in-chat");
  $("messages").replaceChildren();
  $("composer").hidden = true;
  clearUploads();
}

document.addEventListener("visibilitychange", () => {
  // Back to the tab: what arrived meanwhile in the open chat is read now (focus stays put).
  if (state.current && document.visibilityState === "visible") openChat(state.current, { focus: false });
});
$("back").addEventListener("click", () => {
  closeChat();
  changed();
});

// --- history ---

async function loadEarlier() {
  const id = state.current;
  const s = store(id);
  const first = messagesOf(id)[0];
  if (!s.hasMore || s.loading || !first) return;
  s.loading = true;
  const scroller = $("scroller");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  try {
    const page = await rc.history(id, { before: first.seq, limit: PAGE });
    for (const m of page.items) s.byId.set(m.id, m);
    s.hasMore = page.has_more;
  } catch (err) {
    toast(errorText(err));
  } finally {
    s.loading = false;
  }
  renderConversation();
  scroller.scrollTop = scroller.scrollHeight - fromBottom;
}

$("earlier").addEventListener("click", loadEarlier);
$("scroller").addEventListener("scroll", () => {
  if ($("scroller").scrollTop < FOLLOW_PX) loadEarlier();
});

// --- rendering ---

let stickToBottom = true;

export function renderConversation() {
  const chat = state.chats.get(state.current);
  if (!chat) {
    $("chat-title").textContent = "Select a chat";
    $("chat-sub").textContent = "";
    $("chat-avatar").replaceChildren();
    $("chat-info").hidden = true;
    $("typing").textContent = "";
    $("earlier").hidden = true;
    return;
  }
  $("chat-title").textContent = chatTitle(chat);
  fillAvatar($("chat-avatar"), chat.peer, chat.type === "group");
  $("chat-sub").textContent =
    chat.type === "direct"
      ? chat.peer?.status === "online" ? "online" : chat.peer?.last_seen_at ? `last seen ${time(chat.peer.last_seen_at)}` : "offline"
      : `${chat.member_count} members${chat.description ? ` · ${chat.description}` : ""}`;
  $("chat-info").hidden = chat.type !== "group";
  renderTyping(chat);
  renderContext();
  renderUploads();
  $("earlier").hidden = !store(chat.id).hasMore;

  const scroller = $("scroller");
  const follow = stickToBottom || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < FOLLOW_PX;
  stickToBottom = false;
  const stored = messagesOf(chat.id);
  const storedIds = new Set(stored.map((m) => m.client_id).filter(Boolean));
  const pending = rc.outbox.filter((o) => o.chat_id === chat.id && !storedIds.has(o.client_id));
  const items = [...stored, ...pending.map((o) => ({ ...o, pending: true, sender: me() }))];
  reconcile($("messages"), items, keyOf, (m) => signature(chat, m), (m) => renderMessage(chat, m));
  // Marks change in place: a bubble is not rebuilt (nor read out again) when it is read.
  const shown = new Map([...$("messages").children].map((el) => [el.dataset.key, el]));
  for (const m of stored) if (mine(m)) showMark(shown.get(keyOf(m)), receipt(chat.id, m.seq));
  if (follow) scroller.scrollTop = scroller.scrollHeight;
}

// An own message keeps its key from the bubble shown while sending to the stored message, so
// that bubble turns into it in place.
const keyOf = (m) => (m.client_id && m.sender?.id === me()?.id ? `c:${m.client_id}` : `m:${m.id}`);

function signature(chat, m) {
  const quoted = m.reply_to_id ? findMessage(chat.id, m.reply_to_id) : null;
  return JSON.stringify([
    m.pending, m.seq, m.content, m.edited_at, m.deleted, m.reactions, m.attachments?.length, m.attachment_ids,
    quoted?.content, quoted?.deleted,
    state.picker === m.id, chat.type,
  ]);
}

const mine = (m) => m.sender?.id === me()?.id;

function renderMessage(chat, m) {
  const own = mine(m);
  const status = m.pending ? "pending" : own ? receipt(chat.id, m.seq) : null;
  const attachments = m.pending ? (m.attachment_ids || []).map((id) => state.media.get(id)).filter(Boolean) : m.attachments || [];
  const quoted = m.reply_to_id ? findMessage(chat.id, m.reply_to_id) : null;
  return h("li", { class: `msg ${own ? "mine" : "theirs"} ${m.pending ? "pending" : ""} ${m.deleted ? "deleted" : ""}`,
    "data-status": status, "data-seq": m.seq },
    h("div", { class: "bubble" },
      chat.type === "group" && !own ? h("span", { class: "author" }, displayName(m.sender)) : null,
      m.reply_to_id ? h("blockquote", { class: "quote" },
        quoted ? `${displayName(quoted.sender)}: ${quoted.deleted ? "Message deleted" : quoted.content || "📎"}` : "Earlier message") : null,
      m.deleted ? h("p", { class: "text muted" }, "Message deleted") : m.content ? h("p", { class: "text" }, m.content) : null,
      attachments.length ? h("div", { class: "attachments" }, attachments.map(renderAttachment)) : null,
      h("span", { class: "meta" },
        m.edited_at && !m.deleted ? h("span", {}, "edited") : null,
        h("time", { datetime: m.created_at }, time(m.created_at)),
        status ? markOf(status) : null)),
    m.reactions?.length ? h("div", { class: "reactions" }, m.reactions.map((r) =>
      h("button", { type: "button", class: "chip", "aria-pressed": r.me ? "true" : "false", "aria-label": `${r.emoji} ${r.count}`,
        onclick: () => toggleReaction(m, r.emoji, r.me) }, `${r.emoji} ${r.count}`))) : null,
    m.pending || m.deleted ? null : h("div", { class: "actions", role: "toolbar", "aria-label": "Message actions" },
      h("button", { type: "button", onclick: () => startReply(m) }, "Reply"),
      h("button", { type: "button", "aria-expanded": state.picker === m.id ? "true" : "false",
        onclick: () => { state.picker = state.picker === m.id ? null : m.id; changed(); } }, "React"),
      own && m.content ? h("button", { type: "button", onclick: () => startEdit(m) }, "Edit") : null,
      own || chat.my_role === "owner" || chat.my_role === "admin"
        ? h("button", { type: "button", onclick: () => remove(m) }, "Delete") : null),
    state.picker === m.id ? h("div", { class: "picker", role: "group", "aria-label": "Reactions" }, REACTIONS.map((e) =>
      h("button", { type: "button", "aria-label": `React ${e}`, onclick: () => toggleReaction(m, e, m.reactions?.some((r) => r.emoji === e && r.me)) }, e))) : null);
}

const STATUS_TEXT = { pending: "Sending", sent: "Sent", delivered: "Delivered", read: "Read" };
const STATUS_MARK = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓" };

function markOf(status) {
  return h("span", { class: `mark ${status}`, role: "img", "aria-label": STATUS_TEXT[status], title: STATUS_TEXT[status] },
    STATUS_MARK[status]);
}

function showMark(li, status) {
  if (!li || li.dataset.status === status) return;
  li.dataset.status = status;
  const mark = li.querySelector(".mark");
  if (!mark) return;
  mark.className = `mark ${status}`;
  mark.textContent = STATUS_MARK[status];
  mark.setAttribute("aria-label", STATUS_TEXT[status]);
  mark.title = STATUS_TEXT[status];
}

function renderAttachment(a) {
  if (a.thumbnail_url) {
    return h("a", { href: a.url, target: "_blank", rel: "noopener", class: "thumb" },
      h("img", { src: a.thumbnail_url, alt: a.filename, width: a.width, height: a.height, loading: "lazy" }));
  }
  return h("a", { href: a.url, download: a.filename, class: "file" }, `📄 ${a.filename} (${size(a.size)})`);
}

function renderTyping(chat) {
  const users = [...(state.typing.get(chat.id)?.keys() || [])];
  const names = users.map((id) => {
    const member = state.members.get(chat.id)?.get(id);
    return member ? displayName(member.user) : chat.peer?.id === id ? displayName(chat.peer) : "Someone";
  });
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

function renderContext() {
  const m = state.editing || state.replyTo;
  $("context").hidden = !m;
  if (m) $("context-text").textContent = state.editing ? "Editing message" : `Replying to ${displayName(m.sender)}: ${m.content || "📎"}`;
}

// --- actions ---

async function act(promise) {
  try {
    await promise;
  } catch (err) {
    toast(errorText(err));
  }
}

function toggleReaction(m, emoji, had) {
  state.picker = null;
  changed();
  act(had ? rc.unreact(m.id, emoji) : rc.react(m.id, emoji));
}

function startReply(m) {
  state.editing = null;
  state.replyTo = m;
  changed();
  $("text").focus();
}

function startEdit(m) {
  state.replyTo = null;
  state.editing = m;
  $("text").value = m.content;
  changed();
  $("text").focus();
}

function remove(m) {
  act(rc.deleteMessage(m.id));
}

function cancelContext() {
  if (state.editing) $("text").value = "";
  state.replyTo = state.editing = null;
  changed();
}

$("context-cancel").addEventListener("click", cancelContext);

// --- composer ---

$("text").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  } else if (ev.key === "Escape") cancelContext();
});

$("text").addEventListener("input", () => {
  const now = Date.now();
  if (state.current && $("text").value && now - lastTyping > TYPING_EVERY_MS) {
    lastTyping = now;
    try {
      rc.typing(state.current);
    } catch {
      // offline: nobody to tell
    }
  }
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const chatId = state.current;
  const content = $("text").value.trim();
  if (!chatId) return;
  if (state.editing) {
    const m = state.editing;
    state.editing = null;
    $("text").value = "";
    if (content && content !== m.content) act(rc.editMessage(m.id, content).then((updated) => { putMessage(updated); changed(); }));
    changed();
    return;
  }
  if (uploads.some((u) => !u.media && !u.error)) {
    toast("Wait for the attachments to finish uploading.");
    return;
  }
  const attachment_ids = uploads.filter((u) => u.media).map((u) => u.media.id);
  if (!content && !attachment_ids.length) return;
  stickToBottom = true;
  rc.send(chatId, { content, reply_to_id: state.replyTo?.id, attachment_ids: attachment_ids.length ? attachment_ids : undefined });
  state.replyTo = null;
  $("text").value = "";
  clearUploads();
  changed();
});

$("file").addEventListener("change", () => {
  for (const file of $("file").files) upload(file);
  $("file").value = "";
});

async function upload(file) {
  const u = { key: `u${++uploadSeq}`, name: file.name, size: file.size, loaded: 0, media: null, error: null,
    preview: file.type.startsWith("image/") ? URL.createObjectURL(file) : null };
  uploads.push(u);
  renderUploads();
  try {
    u.media = await rc.upload(file, {
      filename: file.name,
      onProgress: (loaded) => {
        u.loaded = loaded;
        renderUploads();
      },
    });
    u.loaded = file.size;
    state.media.set(u.media.id, u.media);
  } catch (err) {
    u.error = errorText(err);
  }
  renderUploads();
}

function clearUploads() {
  for (const u of uploads) if (u.preview) URL.revokeObjectURL(u.preview);
  uploads.length = 0;
  renderUploads();
}

function renderUploads() {
  reconcile($("uploads"), uploads, (u) => u.key, (u) => `${u.loaded}/${!!u.media}/${u.error}`, (u) =>
    h("li", { class: `upload ${u.media ? "done" : ""}` },
      u.preview ? h("img", { src: u.preview, alt: "" }) : h("span", { "aria-hidden": "true" }, "📄"),
      h("span", { class: "grow col" }, h("span", { class: "ellipsis small" }, u.name),
        u.error ? h("span", { class: "small danger-text" }, u.error)
          : h("progress", { max: u.size || 1, value: u.loaded, "aria-label": `Uploading ${u.name}` })),
      h("button", { type: "button", class: "icon", "aria-label": `Remove ${u.name}`, onclick: () => {
        uploads.splice(uploads.indexOf(u), 1);
        if (u.preview) URL.revokeObjectURL(u.preview);
        renderUploads();
      } }, "✕")));
}
