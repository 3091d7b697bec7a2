// Small DOM helpers shared by the web client's modules.

export const $ = (id) => document.getElementById(id);

// h("li", {class: "x", onclick: fn, "aria-label": "y"}, child, "text", [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// Brings `container`'s children to `items`, in order, rebuilding only the ones whose signature
// changed: focus, scroll position and screen-reader context survive updates.
export function reconcile(container, items, key, sig, render) {
  const old = new Map();
  for (const el of container.children) old.set(el.dataset.key, el);
  let i = 0;
  for (const item of items) {
    const k = key(item);
    const s = sig(item);
    let el = old.get(k);
    if (!el || el.dataset.sig !== s) {
      const fresh = render(item);
      fresh.dataset.key = k;
      fresh.dataset.sig = s;
      if (el) {
        const hadFocus = el.contains(document.activeElement);
        el.replaceWith(fresh);
        if (hadFocus) fresh.querySelector("button, [tabindex]")?.focus();
      }
      el = fresh;
    }
    old.delete(k);
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
    i++;
  }
  for (const el of old.values()) el.remove();
}

// Fills the list `target` with a page of `{items, next_cursor}` (`empty` when there are none)
// and, while the server has more, a button named `more` that appends the next page, asked for
// with `next(cursor)`. Focus goes to the first item it brought, so a keyboard user reads on.
export function paged(target, page, render, next, empty, more) {
  target.replaceChildren();
  if (!page.items.length) target.append(h("li", { class: "muted pad" }, empty));
  return addPage(target, page, render, next, more);
}

function addPage(target, page, render, next, more) {
  const rows = page.items.map(render);
  target.append(...rows);
  if (!page.next_cursor) return rows;
  const button = h("button", { type: "button", class: "link" }, more);
  const row = h("li", { class: "more" }, button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const nextPage = await next(page.next_cursor);
      if (!row.isConnected) return; // the list was filled anew meanwhile
      row.remove();
      const added = addPage(target, nextPage, render, next, more);
      (added[0] || target.lastElementChild)?.querySelector("button, [tabindex]")?.focus();
    } catch (err) {
      toast(errorText(err));
      button.disabled = false;
    }
  });
  target.append(row);
  return rows;
}

export function displayName(user) {
  return user ? user.display_name || user.username : "Someone";
}

export function avatar(user, extraClass = "") {
  const el = h("span", { class: `avatar ${extraClass}`, "aria-hidden": "true" });
  fillAvatar(el, user);
  return el;
}

export function fillAvatar(el, user, group = false) {
  el.replaceChildren();
  if (user?.avatar_url) el.append(h("img", { src: user.avatar_url, alt: "" }));
  else el.textContent = group ? "#" : initials(displayName(user));
}

function initials(name) {
  return (name.match(/\b\p{L}/gu) || [name[0] || "?"]).slice(0, 2).join("").toUpperCase();
}

export function time(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function toast(text) {
  const el = h("p", { class: "toast" }, text);
  $("toasts").append(el);
  // A notice stays long enough to read, then leaves on its own.
  setTimeout(() => el.remove(), 6000);
}

export function errorText(err) {
  return err?.detail || err?.message || String(err);
}

// Runs `fn` once `ms` after the last call: search as you type, not per keystroke.
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
