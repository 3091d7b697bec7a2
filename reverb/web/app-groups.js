// Groups: the "New group" dialog, and the members dialog (roles, adding, removing, leaving).
import { $, h, displayName, avatar, toast, errorText, debounce, paged } from "/web/app-util.js";
import { rc, state, changed, loadMembers, me } from "/web/app-state.js";
import { openChat, closeChat } from "/web/app-chat.js";

const SEARCH_PAUSE_MS = 250;
const picked = new Map(); // user id -> User, for the new group

export function initGroups() {
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  $("new-group").addEventListener("click", () => {
    picked.clear();
    $("group-form").reset();
    $("group-candidates").replaceChildren();
    renderPicked();
    $("group-dialog").showModal();
  });
  $("group-search").addEventListener("input", debounce(() => searchInto($("group-search"), $("group-candidates"), groupCandidate), SEARCH_PAUSE_MS));
  $("group-form").addEventListener("submit", createGroup);
  $("chat-info").addEventListener("click", openMembers);
  $("members-search").addEventListener("input", debounce(() => searchInto($("members-search"), $("members-candidates"), memberCandidate), SEARCH_PAUSE_MS));
  $("leave").addEventListener("click", leave);
}

async function searchInto(input, target, render) {
  const q = input.value.trim();
  if (q.length < 2) {
    target.replaceChildren();
    return;
  }
  try {
    const page = await rc.searchUsers(q);
    if (input.value.trim() !== q) return; // a newer search is on its way
    paged(target, page, render, (cursor) => rc.searchUsers(q, { cursor }), "Nobody found", "More people");
  } catch (err) {
    toast(errorText(err));
  }
}

function groupCandidate(u) {
  const button = h("button", { type: "button", class: "chat-item", "aria-pressed": picked.has(u.id) ? "true" : "false" },
    avatar(u), h("span", { class: "grow" }, `${displayName(u)} (@${u.username})`));
  button.addEventListener("click", () => {
    if (picked.has(u.id)) picked.delete(u.id);
    else picked.set(u.id, u);
    button.setAttribute("aria-pressed", picked.has(u.id) ? "true" : "false");
    renderPicked();
  });
  return h("li", {}, button);
}

function renderPicked() {
  $("group-picked").textContent = picked.size
    ? `Members: ${[...picked.values()].map(displayName).join(", ")}`
    : "Only you so far.";
}

async function createGroup(ev) {
  ev.preventDefault();
  const form = $("group-form");
  try {
    const chat = await rc.createGroup({
      name: form.elements.name.value.trim(),
      description: form.elements.description.value.trim() || undefined,
      member_ids: [...picked.keys()],
    });
    state.chats.set(chat.id, chat);
    rc.track(chat.id, chat.last_seq);
    $("group-dialog").close();
    openChat(chat.id);
  } catch (err) {
    toast(errorText(err));
  }
}

// --- members ---

const canManage = (chat) => chat.my_role === "owner" || chat.my_role === "admin";

async function openMembers() {
  const chat = state.chats.get(state.current);
  if (!chat) return;
  $("members-title").textContent = `${chat.name}: members`;
  $("members-desc").textContent = chat.description || "";
  $("members-add").hidden = !canManage(chat);
  $("members-search").value = "";
  $("members-candidates").replaceChildren();
  await reloadMembers(chat);
  $("members-dialog").showModal();
}

async function reloadMembers(chat) {
  try {
    const members = await loadMembers(chat.id);
    renderMembers(chat, members);
    changed();
  } catch (err) {
    toast(errorText(err));
  }
}

function renderMembers(chat, members) {
  $("members").replaceChildren(...members.map((m) => {
    const self = m.user.id === me()?.id;
    const controls = [];
    if (chat.my_role === "owner" && !self && m.role !== "owner") {
      const select = h("select", { "aria-label": `Role of ${displayName(m.user)}` },
        h("option", { value: "member", selected: m.role === "member" }, "member"),
        h("option", { value: "admin", selected: m.role === "admin" }, "admin"));
      select.addEventListener("change", () => change(chat, rc.setRole(chat.id, m.user.id, select.value)));
      controls.push(select);
    } else controls.push(h("span", { class: "badge role" }, m.role));
    if (canManage(chat) && !self && m.role !== "owner") {
      controls.push(h("button", { type: "button", class: "danger", "aria-label": `Remove ${displayName(m.user)}`,
        onclick: () => change(chat, rc.removeMember(chat.id, m.user.id)) }, "Remove"));
    }
    return h("li", { class: "row member" }, avatar(m.user),
      h("span", { class: "grow" }, displayName(m.user), self ? " (you)" : "",
        m.user.status === "online" ? h("span", { class: "dot on", title: "online" }) : null),
      controls);
  }));
}

function memberCandidate(u) {
  return h("li", {}, h("button", { type: "button", class: "chat-item", onclick: () => {
    const chat = state.chats.get(state.current);
    if (chat) change(chat, rc.addMember(chat.id, u.id));
  } }, avatar(u), h("span", { class: "grow" }, `${displayName(u)} (@${u.username})`), h("span", { class: "small" }, "Add")));
}

async function change(chat, promise) {
  try {
    await promise;
  } catch (err) {
    toast(errorText(err));
  }
  await reloadMembers(chat);
}

async function leave() {
  const chat = state.chats.get(state.current);
  if (!chat) return;
  try {
    await rc.removeMember(chat.id, me().id);
    $("members-dialog").close();
    state.chats.delete(chat.id);
    closeChat();
    changed();
  } catch (err) {
    toast(errorText(err));
  }
}
