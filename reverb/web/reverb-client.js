// reverb-client.js: the JavaScript client of Reverb (docs/api.md), a dependency-free ES module
// for browsers and Node >= 20. Login and token refresh, REST helpers, one WebSocket that
// reconnects by itself and resumes with the last `seq` of every chat, an outbox of sends that
// survives a reload, and events delivered in `seq` order, each once. README: "JavaScript client".

// Reconnect delays: full jitter over an exponential ceiling (so a restarted server is not met
// by every client at once), from half a second up to 30 s, about the time a restart takes.
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
// The server pings every 25 s; our own ping at that pace finds a half-open socket (a laptop
// woken from sleep) that the browser would keep believing in, and one silent for two rounds
// is dropped.
const PING_MS = 25_000;
const SILENT_MS = 2 * PING_MS + 5_000;
// The server closes a socket that has not authenticated within 10 s; one that is neither
// ready nor closed a little after that is stuck (a half-open TCP connect): give it up.
const READY_TIMEOUT_MS = 15_000;
// An access token is renewed before it expires: at the latest a minute before, or with a
// third of its life left when it lives less than three minutes (tests use 10 s tokens).
const REFRESH_MARGIN_MS = 60_000;
// Sends the server could not take just now are tried again with the same client_id (the
// server dedups them) after 1 s plus up to 4 s of jitter: past the message limit's window
// (40 per 2 s by default) and spread out, as a database outage ends for every client at once.
// Any other refusal is for good: tried again it would hold up every later send.
const RETRY_CODES = new Set(["rate_limited", "service_unavailable"]);
const SEND_RETRY_MS = 1000;
const EVENTS_PAGE = 1000; // the events endpoint's largest page
// The chat event log's types (docs/api.md): these carry a `seq` of their chat's log. Others are
// live only; `read` and `delivered` carry a `seq` too, but a marker's, not the log's.
const LOGGED = new Set([
  "message.created", "message.updated", "message.deleted", "reaction.updated",
  "chat.updated", "member.added", "member.updated", "member.removed",
]);

/** A failed request: HTTP status (0: no answer; null: refused over the socket) and the
 * problem's stable `code`. */
export class ReverbError extends Error {
  constructor(status, code, detail, { retryAfter = null, errors = null, ref = null } = {}) {
    super(detail || code);
    this.name = "ReverbError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
    this.errors = errors;
    this.ref = ref;
  }
}

/** The delay before reconnect attempt `attempt` (0, 1, ...): uniform in [0, min(cap, base*2^n)). */
export function backoffDelay(attempt, random = Math.random, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS) {
  return Math.floor(random() * Math.min(cap, base * 2 ** Math.min(attempt, 30)));
}

class MemoryStorage {
  #items = new Map();
  getItem(k) { return this.#items.has(k) ? this.#items.get(k) : null; }
  setItem(k, v) { this.#items.set(k, String(v)); }
  removeItem(k) { this.#items.delete(k); }
}

function defaultStorage() {
  try {
    const s = globalThis.localStorage;
    if (s) return s;
  } catch { /* storage disabled (private mode, sandboxed frame) */ }
  return new MemoryStorage();
}

function newClientId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

const enc = encodeURIComponent;

function queryString(query) {
  const pairs = Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== null);
  return pairs.length ? "?" + pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&") : "";
}

async function problem(res) {
  let body = null;
  try { body = JSON.parse(await res.text()); } catch { /* not JSON: a proxy's page */ }
  const retry = Number(res.headers.get("retry-after"));
  return new ReverbError(
    res.status,
    body?.code || `http_${res.status}`,
    body?.detail || body?.title || `HTTP ${res.status}`,
    { retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null, errors: body?.errors ?? null },
  );
}

export class ReverbClient {
  #base; #wsUrl; #storage; #key; #WebSocket; #fetch;
  #listeners = new Map();
  #session = null; // {access_token, refresh_token, expires_at, lifetime, user}
  #refreshing = null;
  #seqs = {};
  #outbox = [];
  #status = "offline";
  #wanted = false; // connect() called and no disconnect() since
  #ws = null;
  #gen = 0; // bumped by every socket opened: handlers of an older one are ignored
  #attempt = 0;
  #timer = null;
  #pinger = null;
  #readyTimer = null;
  #lastFrame = 0;
  #chain = Promise.resolve(); // incoming events, handled one at a time
  // Sends go out one at a time, each after the previous one's answer, so they are stored in the
  // order they were written, also when one is refused for a while (a burst over the rate
  // limit, the database away): the one in flight, and the timer of a send to try again.
  #inflight = null;
  #resend = null;

  constructor({ baseUrl, storage, storageKey = "reverb", WebSocket, fetch } = {}) {
    this.#base = String(baseUrl ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
    this.#wsUrl = this.#base.replace(/^http/, "ws") + "/ws";
    this.#storage = storage ?? defaultStorage();
    this.#key = storageKey;
    this.#WebSocket = WebSocket ?? globalThis.WebSocket;
    const f = fetch ?? globalThis.fetch;
    this.#fetch = (...a) => f(...a); // unbound window.fetch throws "Illegal invocation"
    this.#session = this.#load("session", null);
    this.#seqs = this.#load("seqs", {});
    this.#outbox = this.#load("outbox", []);
    const win = globalThis.window;
    win?.addEventListener?.("online", () => {
      if (this.#wanted && this.#status !== "online") this.#reconnectNow();
    });
    // Another tab on the same storage changed the outbox: show what is pending now.
    win?.addEventListener?.("storage", (e) => {
      if (e.key !== `${this.#key}.outbox`) return;
      this.#outbox = this.#load("outbox", []);
      this.#emit("outbox", this.outbox);
      this.#pump();
    });
  }

  get user() { return this.#session?.user ?? null; }
  get status() { return this.#status; }
  get outbox() { return this.#outbox.map((item) => ({ ...item })); }

  /** Listen to `name`; returns the function that stops listening. */
  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.#listeners.get(name)?.delete(fn);
  }

  #emit(name, value) {
    for (const fn of [...(this.#listeners.get(name) || [])]) {
      try { fn(value); } catch (err) {
        queueMicrotask(() => { throw err; }); // the app's bug, reported, not ours to swallow
      }
    }
  }

  // --- storage ---------------------------------------------------------------------------
  #load(name, fallback) {
    try {
      const text = this.#storage.getItem(`${this.#key}.${name}`);
      return text === null ? fallback : JSON.parse(text);
    } catch { return fallback; }
  }

  #save(name, value) {
    try {
      if (value === null) this.#storage.removeItem(`${this.#key}.${name}`);
      else this.#storage.setItem(`${this.#key}.${name}`, JSON.stringify(value));
      return true;
    } catch {
      return false; // full or disabled: memory still holds it for this page
    }
  }

  #setSession(s) {
    const previous = this.#session?.user?.id;
    if (previous && previous !== s.user.id) this.#forgetState(); // another account's seqs and sends
    this.#session = {
      access_token: s.access_token,
      refresh_token: s.refresh_token,
      expires_at: Date.now() + s.expires_in * 1000,
      lifetime: s.expires_in * 1000,
      user: s.user,
    };
    this.#save("session", this.#session);
    this.#emit("session", s.user);
    return s.user;
  }

  #setUser(user) {
    if (!this.#session) return user;
    this.#session = { ...this.#session, user };
    this.#save("session", this.#session);
    this.#emit("session", user);
    return user;
  }

  #forgetState() {
    clearTimeout(this.#resend);
    this.#resend = this.#inflight = null;
    this.#seqs = {};
    this.#save("seqs", null);
    this.#editOutbox((items) => items.splice(0));
  }

  /** Change the outbox as stored, since other tabs on the same storage change it too. */
  #editOutbox(change) {
    const items = this.#load("outbox", []);
    change(items);
    if (this.#save("outbox", items)) this.#outbox = items;
    else change(this.#outbox);
    this.#emit("outbox", this.outbox);
  }

  /** The session is over (logout, revoked, refresh refused): forget everything of it. */
  #endSession() {
    const had = this.#session !== null;
    this.disconnect();
    this.#session = null;
    this.#save("session", null);
    this.#forgetState();
    if (had) this.#emit("session", null);
  }

  // --- tokens and REST -------------------------------------------------------------------
  async #token() {
    const s = this.#session;
    if (!s) throw new ReverbError(401, "not_authenticated", "not logged in");
    const margin = Math.min(REFRESH_MARGIN_MS, (s.lifetime || 0) / 3);
    if (Date.now() >= s.expires_at - margin) await this.refresh();
    return this.#session.access_token;
  }

  /** Renew the access token (single-flight: concurrent callers share one request). Another
   * tab on the same storage may have rotated the refresh token already: its pair is taken
   * instead of presenting the old one, which the server would treat as stolen. */
  refresh() {
    this.#refreshing ??= this.#locked(async () => {
      const stored = this.#load("session", null);
      const mine = this.#session;
      if (!mine) throw new ReverbError(401, "not_authenticated", "not logged in");
      if (stored && stored.refresh_token !== mine.refresh_token && stored.expires_at > Date.now()) {
        this.#session = stored;
        return;
      }
      try {
        this.#setSession(await this.#call("POST", "/api/auth/refresh", {
          json: { refresh_token: mine.refresh_token }, auth: false,
        }));
      } catch (err) {
        if (err.status === 401 || err.status === 403) this.#endSession();
        throw err;
      }
    }).finally(() => { this.#refreshing = null; });
    return this.#refreshing;
  }

  #locked(fn) {
    const locks = globalThis.navigator?.locks;
    return locks ? locks.request(`${this.#key}.refresh`, fn) : fn();
  }

  /** One REST call: parsed JSON (null for 204), or a ReverbError. An expired access token is
   * renewed once and the call made again. */
  async request(method, path, options = {}) {
    try {
      return await this.#call(method, path, options);
    } catch (err) {
      if (err.status !== 401 || options.auth === false || !this.#session) throw err;
      await this.refresh();
      return this.#call(method, path, options);
    }
  }

  async #call(method, path, { json, query, body, signal, auth = true, transport } = {}) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${await this.#token()}`;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const url = this.#base + path + queryString(query);
    let res;
    try {
      res = await (transport || this.#fetch)(url, { method, headers, body, signal });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new ReverbError(0, "network_error", String(err?.message || err));
    }
    if (!(res.status >= 200 && res.status < 300)) throw await problem(res);
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // --- accounts --------------------------------------------------------------------------
  register({ username, email, password, display_name }) {
    return this.#startSession("/api/auth/register", { username, email, password, display_name });
  }

  login(login, password) {
    const json = login.includes("@") ? { email: login, password } : { username: login, password };
    return this.#startSession("/api/auth/login", json);
  }

  exchangeLoginCode(code) {
    return this.#startSession("/api/auth/oauth/exchange", { login_code: code });
  }

  /** A new session replaces this one; its socket, if any, is closed first (it speaks for the
   * old session, whose revocation it may yet announce) and opened again after. */
  #startSession(path, json) {
    return this.#reconnectAfter(async () =>
      this.#setSession(await this.request("POST", path, { json, auth: false })));
  }

  async #reconnectAfter(fn) {
    const wanted = this.#wanted;
    this.disconnect();
    try {
      return await fn();
    } finally {
      if (wanted && this.#session) this.connect();
    }
  }

  async logout() {
    const s = this.#session;
    this.#endSession();
    if (s) {
      await this.request("POST", "/api/auth/logout", {
        json: { refresh_token: s.refresh_token }, auth: false,
      }).catch(() => {}); // gone here either way; the server's copy expires
    }
  }

  async logoutAll() {
    await this.request("POST", "/api/auth/logout-all");
    this.#endSession();
  }

  providers() { return this.request("GET", "/api/auth/providers", { auth: false }); }
  forgotPassword(email) {
    return this.request("POST", "/api/auth/forgot-password", { json: { email }, auth: false });
  }
  resetPassword(email, code, newPassword) {
    return this.#startSession("/api/auth/reset-password", { email, code, new_password: newPassword });
  }
  /** Change the password; the server ends every session, and this one logs in again. */
  changePassword(current, next) {
    const { username } = this.user ?? {};
    return this.#reconnectAfter(async () => {
      await this.request("POST", "/api/users/me/password", {
        json: { current_password: current, new_password: next },
      });
      return this.login(username, next);
    });
  }
  async verifyEmail(code) {
    return this.#setUser(await this.request("POST", "/api/auth/verify-email", { json: { code } }));
  }
  resendVerification() { return this.request("POST", "/api/auth/resend-verification"); }
  oauthStartUrl(provider, redirectUri) {
    return `${this.#base}/api/auth/oauth/${enc(provider)}/start${queryString({ redirect_uri: redirectUri })}`;
  }

  // --- REST helpers ----------------------------------------------------------------------
  async me() { return this.#setUser(await this.request("GET", "/api/users/me")); }
  async updateMe(fields) {
    return this.#setUser(await this.request("PATCH", "/api/users/me", { json: fields }));
  }
  searchUsers(q, page = {}) {
    return this.request("GET", "/api/users", { query: { search: q, ...page } });
  }
  getUser(id) { return this.request("GET", `/api/users/${enc(id)}`); }

  chats(page = {}) { return this.request("GET", "/api/chats", { query: page }); }
  chat(id) { return this.request("GET", `/api/chats/${enc(id)}`); }
  createDirect(userId) {
    return this.request("POST", "/api/chats", { json: { type: "direct", user_id: userId } });
  }
  createGroup({ name, description, member_ids }) {
    return this.request("POST", "/api/chats", {
      json: { type: "group", name, description, member_ids },
    });
  }
  updateChat(id, fields) { return this.request("PATCH", `/api/chats/${enc(id)}`, { json: fields }); }
  members(chatId, page = {}) {
    return this.request("GET", `/api/chats/${enc(chatId)}/members`, { query: page });
  }
  addMember(chatId, userId) {
    return this.request("POST", `/api/chats/${enc(chatId)}/members`, { json: { user_id: userId } });
  }
  setRole(chatId, userId, role) {
    return this.request("PATCH", `/api/chats/${enc(chatId)}/members/${enc(userId)}`, { json: { role } });
  }
  removeMember(chatId, userId) {
    return this.request("DELETE", `/api/chats/${enc(chatId)}/members/${enc(userId)}`);
  }
  events(chatId, { after, limit } = {}) {
    return this.request("GET", `/api/chats/${enc(chatId)}/events`, { query: { after, limit } });
  }

  history(chatId, { before, after, limit } = {}) {
    return this.request("GET", `/api/messages/${enc(chatId)}`, { query: { before, after, limit } });
  }
  editMessage(id, content) {
    return this.request("PATCH", `/api/messages/${enc(id)}`, { json: { content } });
  }
  deleteMessage(id) { return this.request("DELETE", `/api/messages/${enc(id)}`); }
  react(id, emoji) { return this.request("PUT", `/api/messages/${enc(id)}/reactions/${enc(emoji)}`); }
  unreact(id, emoji) {
    return this.request("DELETE", `/api/messages/${enc(id)}/reactions/${enc(emoji)}`);
  }
  searchMessages(q, chatId, page = {}) {
    return this.request("GET", "/api/messages/search", { query: { q, chat_id: chatId, ...page } });
  }

  /** Upload a File or Blob; with XMLHttpRequest (browsers) `onProgress(loaded, total)` is
   * called as it goes. */
  upload(file, { filename, onProgress } = {}) {
    const form = new FormData();
    form.append("file", file, filename ?? file.name ?? "file");
    const XHR = globalThis.XMLHttpRequest;
    const transport = XHR && onProgress ? (url, init) => xhrFetch(XHR, url, init, onProgress) : undefined;
    return this.request("POST", "/api/media", { body: form, transport });
  }

  // --- realtime --------------------------------------------------------------------------
  /** Open the socket and keep it open (reconnecting) until disconnect() or logout(). */
  connect() {
    if (!this.#session) throw new ReverbError(401, "not_authenticated", "not logged in");
    if (!this.#WebSocket) {
      throw new ReverbError(0, "no_websocket", "no WebSocket here: pass one to ReverbClient");
    }
    this.#wanted = true;
    if (this.#status === "offline") this.#open();
  }

  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#drop(1000);
    this.#setStatus("offline");
  }

  /** Follow `chatId` from `seq` on (the app has shown it up to there); never lowers. */
  track(chatId, seq) {
    const last = this.#seqs[chatId];
    if (last === undefined || seq > last) this.#setSeq(chatId, seq);
  }

  lastSeq(chatId) { return this.#seqs[chatId]; }

  // The seqs in memory are this client's (what it delivered); the stored ones are for the next
  // page, and another tab's may be ahead: a seq is stored only where it is higher.
  #setSeq(chatId, seq) {
    this.#seqs[chatId] = seq;
    const stored = this.#load("seqs", {});
    if (!(stored[chatId] >= seq)) this.#save("seqs", { ...stored, [chatId]: seq });
  }

  #untrack(chatId) {
    delete this.#seqs[chatId];
    const stored = this.#load("seqs", {});
    delete stored[chatId];
    this.#save("seqs", stored);
  }

  /** Queue a message: stored at once (it survives a reload), sent whenever the socket is up,
   * again with the same client_id until the server acknowledges it. */
  send(chatId, { content = "", reply_to_id = null, attachment_ids = [] } = {}) {
    const item = {
      client_id: newClientId(), chat_id: chatId, content, reply_to_id, attachment_ids,
      created_at: new Date().toISOString(),
    };
    this.#editOutbox((items) => items.push(item));
    this.#pump();
    return { ...item };
  }

  typing(chatId) { this.#frame({ type: "typing", chat_id: chatId }); }
  markRead(chatId, seq) { return this.#mark("read", chatId, seq); }
  markDelivered(chatId, seq) { return this.#mark("delivered", chatId, seq); }

  async #mark(kind, chatId, seq) {
    if (this.#frame({ type: kind, chat_id: chatId, seq })) return;
    await this.request("POST", `/api/chats/${enc(chatId)}/${kind}`, { json: { seq } });
  }

  #frame(frame) {
    if (this.#status !== "online") return false;
    try {
      this.#ws.send(JSON.stringify(frame));
      return true;
    } catch { return false; }
  }

  /** Send the first pending message, unless one is in flight or waiting to be tried again. */
  #pump() {
    const item = this.#outbox[0];
    if (!item || this.#inflight || this.#resend) return;
    const { client_id, chat_id, content, reply_to_id, attachment_ids } = item;
    const frame = { type: "message.send", ref: client_id, client_id, chat_id, content, attachment_ids };
    if (reply_to_id) frame.reply_to_id = reply_to_id;
    if (this.#frame(frame)) this.#inflight = client_id;
  }

  #setStatus(status) {
    if (status === this.#status) return;
    this.#status = status;
    this.#emit("status", status);
  }

  async #open() {
    this.#timer = null;
    const gen = ++this.#gen;
    this.#setStatus("connecting");
    let token;
    try {
      token = await this.#token(); // renewed first if it is about to expire
    } catch (err) {
      if (gen === this.#gen && this.#wanted && this.#session) this.#retryLater();
      return;
    }
    if (gen !== this.#gen || !this.#wanted) return;
    let ws;
    try {
      ws = new this.#WebSocket(this.#wsUrl);
    } catch {
      this.#retryLater();
      return;
    }
    this.#ws = ws;
    this.#readyTimer = setTimeout(() => { if (gen === this.#gen) this.#closed(4408); }, READY_TIMEOUT_MS);
    ws.onopen = () => {
      if (gen !== this.#gen) return;
      ws.send(JSON.stringify({ type: "auth", token, since: this.#seqs }));
    };
    ws.onmessage = (m) => {
      if (gen !== this.#gen) return;
      this.#lastFrame = Date.now();
      let frame;
      try { frame = JSON.parse(m.data); } catch { return; }
      this.#onFrame(frame, gen);
    };
    ws.onclose = (e) => { if (gen === this.#gen) this.#closed(e.code); };
    ws.onerror = () => {}; // a close follows
  }

  /** Forget the current socket (its handlers go quiet) and close it. */
  #drop(code) {
    clearInterval(this.#pinger);
    clearTimeout(this.#readyTimer);
    this.#pinger = null;
    this.#inflight = null; // its answer, if any, would come on this socket
    const ws = this.#ws;
    this.#ws = null;
    this.#gen++;
    if (ws) {
      try { ws.close(code); } catch { /* already closing */ }
    }
  }

  #closed(code) {
    this.#drop(1000);
    if (!this.#wanted) return this.#setStatus("offline");
    this.#setStatus("connecting");
    if (code === 4401) {
      // The token was refused (expired, revoked): renew it; a refused renewal ends the session.
      this.refresh().then(() => this.#retryLater(), () => { if (this.#session) this.#retryLater(); });
      return;
    }
    this.#retryLater();
  }

  #retryLater() {
    if (!this.#wanted || this.#timer) return;
    this.#timer = setTimeout(() => this.#open(), backoffDelay(this.#attempt++));
  }

  #reconnectNow() {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#drop(1000);
    this.#open();
  }

  #onFrame(frame, gen) {
    switch (frame.type) {
      case "ready":
        clearTimeout(this.#readyTimer);
        this.#attempt = 0;
        this.#setUser(frame.user);
        this.#setStatus("online");
        this.#startPinging(gen);
        this.#pump();
        return;
      case "ack":
        if (frame.message) this.#acked(frame.ref ?? frame.message.client_id, frame.message);
        return;
      case "error":
        return this.#refused(frame);
      case "pong":
        return;
      case "session.revoked":
        this.#endSession();
        return;
      default:
        this.#chain = this.#chain
          .then(() => this.#receive(frame, gen))
          .catch((err) => queueMicrotask(() => { throw err; }));
    }
  }

  #startPinging(gen) {
    clearInterval(this.#pinger);
    this.#pinger = setInterval(() => {
      if (gen !== this.#gen) return;
      if (Date.now() - this.#lastFrame > SILENT_MS) return this.#closed(1006);
      this.#frame({ type: "ping" });
    }, PING_MS);
    this.#pinger?.unref?.(); // Node: a socket's timer alone does not keep a program running
  }

  #acked(clientId, message) {
    if (clientId === this.#inflight) this.#inflight = null;
    // A second ack of one send (another tab, or a copy of the outbox, sent it too): done.
    if (this.#outbox.some((item) => item.client_id === clientId)) {
      this.#editOutbox((items) => removeItem(items, clientId));
      this.#emit("ack", { client_id: clientId, message });
    }
    this.#pump();
  }

  #refused(frame) {
    const id = frame.ref;
    if (id === undefined || id !== this.#inflight) return; // not about a send in flight
    this.#inflight = null;
    if (RETRY_CODES.has(frame.code)) {
      this.#resend = setTimeout(() => {
        this.#resend = null;
        this.#pump();
      }, SEND_RETRY_MS + backoffDelay(3));
      return;
    }
    this.#editOutbox((items) => removeItem(items, id));
    this.#emit("error", new ReverbError(null, frame.code, frame.detail, { ref: id }));
    this.#pump();
  }

  /** One incoming event, in the order they came: logged events in seq order, each once. */
  async #receive(evt, gen) {
    if (gen !== this.#gen) return; // from a socket given up on: the next one replays it
    if (!LOGGED.has(evt.type)) {
      if (evt.type === "chat.created") this.track(evt.chat.id, evt.chat.last_seq);
      return this.#deliver(evt);
    }
    const chatId = evt.chat_id;
    const last = this.#seqs[chatId];
    if (last !== undefined && evt.seq > last + 1) {
      try {
        await this.#fill(chatId, evt.seq, gen);
      } catch {
        // Unknown what lies in the gap: resume from the last seq delivered instead.
        if (gen === this.#gen) this.#closed(1006);
        return;
      }
      if (gen !== this.#gen) return;
    }
    this.#logged(evt);
  }

  #logged(evt) {
    const last = this.#seqs[evt.chat_id];
    if (last !== undefined && evt.seq <= last) return; // seen already
    this.#setSeq(evt.chat_id, evt.seq);
    if (evt.type === "member.removed" && evt.user_id === this.user?.id) this.#untrack(evt.chat_id);
    this.#deliver(evt);
  }

  /** Fetch the events of `chatId` after its last seq and before `upTo`, and deliver them. */
  async #fill(chatId, upTo, gen) {
    while (this.#seqs[chatId] < upTo - 1) {
      const page = await this.events(chatId, { after: this.#seqs[chatId], limit: EVENTS_PAGE });
      if (gen !== this.#gen) return;
      for (const evt of page.items) if (evt.seq < upTo) this.#logged(evt);
      if (!page.has_more || !page.items.length) break;
    }
  }

  #deliver(evt) {
    this.#emit("event", evt);
    this.#emit(evt.type, evt);
  }
}

function removeItem(items, clientId) {
  const i = items.findIndex((item) => item.client_id === clientId);
  if (i >= 0) items.splice(i, 1);
}

function xhrFetch(XHR, url, { method, headers, body, signal }, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XHR();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
    xhr.onload = () => resolve({
      status: xhr.status,
      headers: { get: (name) => xhr.getResponseHeader(name) },
      text: async () => xhr.responseText,
    });
    xhr.onerror = () => reject(new TypeError("network error"));
    xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}
