// The web client: start-up, accounts, the chat list, search, and the server's events.
// The conversation is in app-chat.js, the group dialogs in app-groups.js.
import { $, h, reconcile, displayName, avatar, fillAvatar, time, toast, errorText, debounce, paged } from "/web/app-util.js";
import {
  rc, state, changed, onChange, list, everyPage, me, reset, sortedChats, putMessage, findMessage, applyReaction,
  setTyping, updateMarker, userEverywhere, chatTitle, mark, flushMarks,
} from "/web/app-state.js";
import { openChat, closeChat, renderConversation, isVisible } from "/web/app-chat.js";
import { initGroups } from "/web/app-groups.js";

const THEME_KEY = "reverb-theme";
// Search waits for a pause in typing, so one request goes out per word, not per key.
const SEARCH_PAUSE_MS = 250;

// --- theme ---

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
}
applyTheme(localStorage.getItem(THEME_KEY));
$("theme").addEventListener("click", () => {
  const dark =
    document.documentElement.dataset.theme === "dark" ||
    (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
  const next = dark ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});

// --- accounts ---

const FORMS = ["login-form", "register-form", "forgot-form", "reset-form"];

function showForm(id) {
  for (const f of FORMS) $(f).hidden = f !== id;
  $(id).querySelector("input")?.focus();
}

for (const button of document.querySelectorAll("[data-show]")) {
  button.addEventListener("click", () => showForm(button.dataset.show));
}

function submitting(form, action) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const button = form.querySelector("[type=submit]");
    button.disabled = true;
    try {
      await action(data);
    } catch (err) {
      toast(errorText(err));
    } finally {
      button.disabled = false;
    }
  });
}

submitting($("login-form"), (d) => rc.login(d.login.trim(), d.password));
submitting($("register-form"), (d) =>
  rc.register({
    username: d.username.trim(),
    email: d.email.trim(),
    password: d.password,
    display_name: d.display_name.trim() || undefined,
  }),
);
submitting($("forgot-form"), async (d) => {
  await rc.forgotPassword(d.email.trim());
  $("reset-form").elements.email.value = d.email.trim();
  showForm("reset-form");
  toast("If that address has an account, a code is on its way.");
});
submitting($("reset-form"), (d) => rc.resetPassword(d.email.trim(), d.code.trim(), d.new_password));

async function showProviders() {
  let providers = [];
  try {
    providers = await rc.providers();
  } catch {
    return; // no social login offered, or no answer: the password form is enough
  }
  const box = $("providers");
  box.replaceChildren(
    ...providers.map((p) =>
      h("a", { class: "button", href: rc.oauthStartUrl(p.name, location.origin + "/") }, `Continue with ${p.display_name}`),
    ),
  );
  box.hidden = providers.length === 0;
}

// Back from a social login: the server sent a one-time code, never tokens, in the URL.
async function finishSocialLogin() {
  const params = new URLSearchParams(location.search);
  const code = params.get("login_code");
  const error = params.get("error");
  if (!code && !error) return;
  history.replaceState(null, "", "/");
  if (error) toast(`Login failed: ${error}`);
  else {
    try {
      await rc.exchangeLoginCode(code);
    } catch (err) {
      toast(errorText(err));
    }
  }
}

$("logout").addEventListener("click", () => rc.logout().catch((err) => toast(errorText(err))));

let started = false;

function showSession(user) {
  if (!user) {
    started = false;
    reset();
    closeChat();
    $("app").hidden = true;
    $("auth").hidden = false;
    $("offline").hidden = true;
    showForm("login-form");
    showProviders();
    return;
  }
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = displayName(user);
  fillAvatar($("me-avatar"), user);
  if (!started) {
    started = true;
    start();
  }
}

// Chats first, then the socket: tracking each chat at its last seq means the socket brings
// only what happens after the list was read, and a reload never replays old events.
async function start() {
  try {
    // Every page, each shown as it comes: the list is whole (for the order, the unread counts
    // and the socket's catch-up) before the socket connects.
    let pages = 0;
    await everyPage((cursor) => rc.chats({ cursor }), (chats) => {
      pages += 1;
      addChats(chats);
    });
    // A chat active (or new) while the later pages were read moved ahead of their cursor: it is
    // on the first page now. Chats already here catch up over the socket instead.
    if (pages > 1) addChats(list(await rc.chats()));
  } catch (err) {
    toast(errorText(err));
  }
  if (navigator.onLine) rc.connect();
  showStatus();
  changed();
}

function addChats(chats) {
  for (const chat of chats) {
    if (state.chats.has(chat.id)) continue;
    state.chats.set(chat.id, chat);
    rc.track(chat.id, chat.last_seq);
    if (chat.unread_count > 0) mark("delivered", chat.id, chat.last_seq);
  }
  changed();
}

// --- connection ---

function showStatus() {
  const banner = $("offline");
  const status = rc.status;
  banner.hidden = !rc.user || status === "online";
  banner.textContent = !navigator.onLine
    ? "You are offline. Messages you send now go out when the connection is back."
    : status === "connecting"
      ? "Connecting…"
      : "Not connected. Retrying…";
}

// The browser knows before the socket does: drop the socket at once, and reconnect (catching up
// on everything missed) as soon as the network is back.
addEventListener("offline", () => {
  rc.disconnect();
  showStatus();
});
addEventListener("online", () => {
  if (rc.user) rc.connect();
  showStatus();
});
rc.on("status", (status) => {
  showStatus();
  if (status === "online") flushMarks();
});

// --- events ---

function onEvent(e) {
  const chat = e.chat_id ? state.chats.get(e.chat_id) : undefined;
  switch (e.type) {
    case "message.created": {
      const m = e.message;
      putMessage(m);
      setTyping(m.chat_id, m.sender.id, false);
      if (m.sender.id !== me()?.id && chat) {
        mark("delivered", m.chat_id, m.seq);
        if (isVisible(m.chat_id)) mark("read", m.chat_id, m.seq);
        else if (!m.deleted) chat.unread_count = (chat.unread_count || 0) + 1;
      }
      break;
    }
    case "message.updated":
      putMessage(e.message);
      break;
    case "message.deleted": {
      const m = findMessage(e.chat_id, e.message_id);
      if (m) Object.assign(m, { deleted: true, content: "", attachments: [], reactions: [] });
      if (chat?.last_message?.id === e.message_id) chat.last_message = { ...chat.last_message, deleted: true, content: "" };
      break;
    }
    case "reaction.updated":
      applyReaction(e);
      break;
    case "typing":
      if (e.user_id !== me()?.id) setTyping(e.chat_id, e.user_id, true);
      break;
    case "read":
    case "delivered":
      updateMarker(e);
      break;
    case "presence":
      userEverywhere(e.user_id, { status: e.status, last_seen_at: e.last_seen_at });
      break;
    case "chat.created":
      state.chats.set(e.chat.id, e.chat);
      rc.track(e.chat.id, e.chat.last_seq);
      break;
    case "chat.updated":
      if (chat) Object.assign(chat, { name: e.chat.name, description: e.chat.description, updated_at: e.chat.updated_at });
      break;
    case "member.added":
      if (e.user.id === me()?.id) addChat(e.chat_id);
      else if (chat) {
        chat.member_count += 1;
        state.members.get(e.chat_id)?.set(e.user.id, { user: e.user, role: e.role, last_read_seq: 0, last_delivered_seq: 0 });
      }
      break;
    case "member.updated": {
      const member = state.members.get(e.chat_id)?.get(e.user_id);
      if (member) member.role = e.role;
      if (chat && e.user_id === me()?.id) chat.my_role = e.role;
      break;
    }
    case "member.removed":
      if (e.user_id === me()?.id) dropChat(e.chat_id);
      else if (chat) {
        chat.member_count -= 1;
        state.members.get(e.chat_id)?.delete(e.user_id);
      }
      break;
    case "session.revoked":
      toast("You were logged out everywhere.");
      break;
  }
  if (chat && e.seq) chat.last_seq = Math.max(chat.last_seq || 0, e.seq);
  changed();
}

async function addChat(id) {
  try {
    const chat = await rc.chat(id);
    state.chats.set(chat.id, chat);
    changed();
  } catch (err) {
    toast(errorText(err));
  }
}

function dropChat(id) {
  state.chats.delete(id);
  state.stores.delete(id);
  state.members.delete(id);
  if (state.current === id) closeChat();
  changed();
}

rc.on("event", onEvent);
rc.on("ack", ({ message }) => {
  putMessage(message);
  changed();
});
rc.on("outbox", changed);
rc.on("error", (err) => toast(`Not sent: ${errorText(err)}`));
rc.on("session", (user) => {
  showSession(user);
  changed();
});

// --- chat list ---

function preview(m) {
  if (!m) return "No messages yet";
  const who = m.sender?.id === me()?.id ? "You: " : "";
  if (m.deleted) return `${who}Message deleted`;
  if (m.content) return who + m.content;
  const files = m.attachments || [];
  return who + (files.length ? `📎 ${files.map((a) => a.filename).join(", ")}` : "");
}

function renderChats() {
  const chats = sortedChats();
  reconcile(
    $("chats"),
    chats,
    (c) => c.id,
    (c) =>
      JSON.stringify([chatTitle(c), c.peer?.status, c.unread_count, c.last_message?.id, c.last_message?.content,
        c.last_message?.deleted, c.id === state.current, c.peer?.avatar_url]),
    renderChatItem,
  );
  $("no-chats").hidden = chats.length > 0;
}

function renderChatItem(c) {
  const title = chatTitle(c);
  const online = c.peer?.status === "online";
  const unread = c.unread_count || 0;
  const face = avatar(c.type === "direct" ? c.peer : { display_name: "#" }, c.type === "group" ? "group" : "");
  if (c.type === "group") face.textContent = "#";
  const label = [title, c.type === "direct" ? (online ? "online" : "offline") : "group",
    unread ? `${unread} unread` : "", preview(c.last_message)].filter(Boolean).join(", ");
  return h("li", {},
    h("button", { type: "button", class: "chat-item", "aria-current": c.id === state.current ? "true" : false,
      "aria-label": label, onclick: () => openChat(c.id) },
      h("span", { class: "face" }, face,
        c.type === "direct" ? h("span", { class: `dot ${online ? "on" : ""}`, title: online ? "online" : "offline" }) : null),
      h("span", { class: "grow col" },
        h("span", { class: "row" }, h("strong", { class: "grow ellipsis" }, title),
          c.last_message ? h("time", { class: "muted small", datetime: c.last_message.created_at }, time(c.last_message.created_at)) : null),
        h("span", { class: "row" }, h("span", { class: "grow ellipsis muted small" }, preview(c.last_message)),
          unread ? h("span", { class: "badge" }, unread > 99 ? "99+" : unread) : null))));
}

// --- search ---

const runSearch = debounce(async (q) => {
  if (q.length < 2) {
    $("results").hidden = true;
    return;
  }
  try {
    const [people, found] = await Promise.all([rc.searchUsers(q), rc.searchMessages(q)]);
    if ($("search").value.trim() !== q) return; // a newer search is on its way
    paged($("people"), people, person, (cursor) => rc.searchUsers(q, { cursor }), "Nobody found", "More people");
    paged($("found"), found, foundMessage, (cursor) => rc.searchMessages(q, undefined, { cursor }),
      "No messages found", "More messages");
    $("results").hidden = false;
  } catch (err) {
    toast(errorText(err));
  }
}, SEARCH_PAUSE_MS);

$("search").addEventListener("input", () => runSearch($("search").value.trim()));
$("search").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") clearSearch();
});

function clearSearch() {
  $("search").value = "";
  $("results").hidden = true;
}

function person(u) {
  return h("li", {}, h("button", { type: "button", class: "chat-item", onclick: () => startDirect(u) },
    avatar(u), h("span", { class: "grow col" }, h("strong", {}, displayName(u)), h("span", { class: "muted small" }, `@${u.username}`)),
    h("span", { class: "small" }, "Message")));
}

function foundMessage(m) {
  const chat = state.chats.get(m.chat_id);
  return h("li", {}, h("button", { type: "button", class: "chat-item", onclick: () => { clearSearch(); openChat(m.chat_id); } },
    h("span", { class: "grow col" },
      h("strong", { class: "small" }, `${chat ? chatTitle(chat) : "Chat"} · ${displayName(m.sender)}`),
      h("span", { class: "ellipsis" }, m.content)),
    h("time", { class: "muted small", datetime: m.created_at }, time(m.created_at))));
}

async function startDirect(user) {
  try {
    const chat = await rc.createDirect(user.id);
    if (!state.chats.has(chat.id)) {
      state.chats.set(chat.id, chat);
      rc.track(chat.id, chat.last_seq);
    }
    clearSearch();
    openChat(chat.id);
  } catch (err) {
    toast(errorText(err));
  }
}

// --- start ---

onChange(renderChats);
onChange(renderConversation);
initGroups();
await finishSocialLogin();
showSession(rc.user);
