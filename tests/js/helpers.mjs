// Shared by the client's tests: users on the real server, a storage that outlives a client (a
// page reload), and waiting on a condition (never a fixed sleep).
import { afterEach } from "node:test";

import { ReverbClient } from "../../reverb/web/reverb-client.js";

export const URL_ = process.env.REVERB_URL;
if (!URL_) throw new Error("REVERB_URL is not set: run through tests/e2e/test_js_client.py");
export const PASSWORD = "correct horse battery";

let counter = 0;
const runId = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/** A Storage-like object kept in memory: handing it to a new client is a page reload. */
export class MemoryStorage {
  items = new Map();
  getItem(k) { return this.items.has(k) ? this.items.get(k) : null; }
  setItem(k, v) { this.items.set(k, String(v)); }
  removeItem(k) { this.items.delete(k); }
  copy() {
    const s = new MemoryStorage();
    s.items = new Map(this.items);
    return s;
  }
  json(name) { return JSON.parse(this.getItem(`reverb.${name}`)); }
}

const clients = [];
// Every client's socket is closed after each test, passed or failed: an open one would keep
// the file's process alive past its last test.
afterEach(() => {
  for (const rc of clients.splice(0)) rc.disconnect();
});

export function client(options = {}) {
  const rc = new ReverbClient({ baseUrl: URL_, storage: new MemoryStorage(), ...options });
  clients.push(rc);
  return rc;
}

/** A new user, registered and logged in on a client of its own. */
export async function user(options = {}) {
  const name = `js${runId}_${++counter}`;
  const rc = client(options);
  await rc.register({ username: name, email: `${name}@example.com`, password: PASSWORD });
  return rc;
}

/** A WebSocket class that records, for the test, the close code of each of its sockets and
 * every frame they received; the client uses it as it would the global one. */
export function recordingSocket() {
  const closes = [];
  const frames = [];
  class Recording extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("close", (e) => closes.push(e.code));
      this.addEventListener("message", (m) => frames.push(JSON.parse(m.data)));
    }
  }
  return { closes, frames, WebSocket: Recording };
}

/** Wait until `fn()` is truthy (returning it); fail after `timeout` ms. */
export async function until(fn, { timeout = 15_000, what = String(fn) } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10)); // polling interval, not a race cover
  }
}

/** Every event of `name` the client delivers, in order. */
export function collect(rc, name = "event") {
  const seen = [];
  rc.on(name, (e) => seen.push(e));
  return seen;
}

const MARKERS = new Set(["read", "delivered"]); // live events whose `seq` is a marker's

/** The logged events of `chatId` among `events`, as their seqs. */
export function seqsOf(events, chatId) {
  return events
    .filter((e) => e.chat_id === chatId && e.seq !== undefined && !MARKERS.has(e.type))
    .map((e) => e.seq);
}

export async function online(rc) {
  rc.connect();
  await until(() => rc.status === "online", { what: "online" });
}

export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
