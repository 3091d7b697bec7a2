// Accounts and tokens: register, login, renewal of an expired access token (before use, on a
// REST 401, on a socket closed 4401), single-flight refresh, a refused refresh ending the
// session, and REST errors as ReverbError.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ReverbClient, ReverbError } from "../../reverb/web/reverb-client.js";
import {
  MemoryStorage, PASSWORD, URL_, client, collect, online, recordingSocket, until, user,
} from "./helpers.mjs";

const TTL_MS = Number(process.env.REVERB_ACCESS_TOKEN_TTL_S || 0) * 1000;

/** fetch, with every call's method and path recorded. */
function recordingFetch() {
  const calls = [];
  const f = async (url, init) => {
    const res = await fetch(url, init);
    calls.push(`${init.method} ${new URL(url).pathname} ${res.status}`);
    return res;
  };
  return { calls, fetch: f };
}

async function rejects(promise, status, code) {
  const err = await promise.then(
    () => assert.fail(`expected ${status} ${code}`),
    (e) => e,
  );
  assert.ok(err instanceof ReverbError, String(err));
  assert.equal(err.status, status, err.detail);
  assert.equal(err.code, code, err.detail);
  assert.ok(err.detail, "a problem's detail");
  return err;
}

test("register, log out, log in by username and by email", async () => {
  const rc = await user();
  const sessions = collect(rc, "session");
  const { username, email, id } = rc.user;
  assert.equal((await rc.me()).id, id);
  await rc.logout();
  assert.equal(rc.user, null);
  assert.deepEqual(sessions.map((u) => u && u.id), [id, null]);
  assert.equal((await rc.login(username, PASSWORD)).id, id);
  const other = client();
  assert.equal((await other.login(email, PASSWORD)).id, id);
  // Logged out: the refresh token is void, and the client refuses before asking.
  const storage = new MemoryStorage();
  const third = new ReverbClient({ baseUrl: URL_, storage });
  await third.login(username, PASSWORD);
  const refreshToken = storage.json("session").refresh_token;
  await third.logout();
  assert.equal(storage.getItem("reverb.session"), null);
  await rejects(third.me(), 401, "not_authenticated");
  const res = await fetch(`${URL_}/api/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  assert.equal(res.status, 401);
});

test("REST errors are ReverbErrors with the problem's status, code and detail", async () => {
  const [rc, other] = await Promise.all([user(), user()]);
  await rejects(client().login(rc.user.username, "wrong password"), 401, "invalid_credentials");
  await rejects(
    client().register({ username: rc.user.username, email: "x@example.com", password: PASSWORD }),
    409,
    "username_taken",
  );
  const invalid = await rejects(rc.createGroup({ name: "" }), 422, "validation_error");
  assert.ok(Array.isArray(invalid.errors) && invalid.errors.length > 0, "the 422's errors list");
  await rejects(rc.createDirect(rc.user.id), 422, "validation_error");
  // A chat that exists but is not the caller's answers as one that does not exist.
  const theirs = await other.createGroup({ name: "theirs" });
  await rejects(rc.chat(theirs.id), 404, "chat_not_found");
  const nobody = await rejects(client().request("GET", "/api/chats", { auth: false }), 401, "not_authenticated");
  assert.equal(nobody.retryAfter, null);
  // Repeated failed logins are slowed: 429 with the Retry-After the client reads.
  let limited;
  for (let i = 0; i < 20 && !limited; i++) {
    limited = await client().login(other.user.username, "wrong password").catch((e) => (e.status === 429 ? e : null));
  }
  assert.ok(limited, "no 429 after 20 failed logins");
  assert.equal(limited.code, "rate_limited");
  assert.ok(limited.retryAfter > 0, String(limited.retryAfter));
  // No server at all: status 0, network_error.
  const nowhere = new ReverbClient({ baseUrl: "http://127.0.0.1:9", storage: new MemoryStorage() });
  await rejects(nowhere.providers(), 0, "network_error");
});

test("an expired access token is renewed: before use, after a 401, after a socket's 4401", { timeout: 60_000 }, async () => {
  assert.ok(TTL_MS >= 10_000, "REVERB_ACCESS_TOKEN_TTL_S names the server's token lifetime");
  // Three users. The first renews ahead of expiry; the other two are reloads whose storage
  // claims their expired tokens are fresh, so only the server's refusal shows them expired.
  const storages = [new MemoryStorage(), new MemoryStorage(), new MemoryStorage()];
  const users = await Promise.all(storages.map((storage) => user({ storage })));
  const tokens = storages.map((s) => s.json("session").access_token);
  const expiresAt = Math.max(...storages.map((s) => s.json("session").expires_at));
  for (const s of storages.slice(1)) {
    s.setItem("reverb.session", JSON.stringify({ ...s.json("session"), expires_at: Date.now() + 3_600_000 }));
  }
  const stale = tokens[0];
  // Wait for the tokens to expire (the server's clock, so half a second beyond), proved by
  // the server refusing one.
  await until(async () => {
    if (Date.now() < expiresAt + 500) return false;
    const res = await fetch(`${URL_}/api/users/me`, { headers: { Authorization: `Bearer ${stale}` } });
    return res.status === 401;
  }, { timeout: TTL_MS + 10_000, what: "the access tokens to expire" });

  // Before use, and once for five concurrent calls.
  const seen = recordingFetch();
  const reloadedAhead = new ReverbClient({ baseUrl: URL_, storage: storages[0], fetch: seen.fetch });
  const results = await Promise.all(Array.from({ length: 5 }, () => reloadedAhead.me()));
  assert.ok(results.every((me) => me.id === users[0].user.id));
  assert.equal(seen.calls.filter((c) => c.startsWith("POST /api/auth/refresh")).length, 1, String(seen.calls));
  assert.ok(!seen.calls.some((c) => c.endsWith(" 401")), String(seen.calls));

  // After a 401: refresh, then the same call again.
  const seen2 = recordingFetch();
  const reloadedRest = new ReverbClient({ baseUrl: URL_, storage: storages[1], fetch: seen2.fetch });
  assert.equal((await reloadedRest.chats()).items.length, 0);
  assert.deepEqual(seen2.calls, ["GET /api/chats 401", "POST /api/auth/refresh 200", "GET /api/chats 200"]);
  assert.notEqual(storages[1].json("session").access_token, tokens[1]);

  // A socket refused with 4401: refresh, then connect again.
  const ws = recordingSocket();
  const reloadedSocket = new ReverbClient({ baseUrl: URL_, storage: storages[2], WebSocket: ws.WebSocket });
  await online(reloadedSocket);
  assert.deepEqual(ws.closes, [4401]);
  assert.notEqual(storages[2].json("session").access_token, tokens[2]);
  reloadedSocket.disconnect();
});

test("a refused refresh ends the session; so does session.revoked on the socket", async () => {
  const storage = new MemoryStorage();
  const rc = await user({ storage });
  const sessions = collect(rc, "session");
  await online(rc);
  const offline = client({ storage: storage.copy() }); // the same session, another page
  const elsewhere = client();
  await elsewhere.login(rc.user.username, PASSWORD);
  await elsewhere.logoutAll();
  // The connected page is told on its socket.
  await until(() => rc.user === null, { what: "the session to end" });
  assert.equal(rc.status, "offline");
  assert.equal(sessions.at(-1), null);
  assert.equal(storage.getItem("reverb.session"), null);
  await rejects(rc.me(), 401, "not_authenticated");
  // The other finds out at its next call: 401, the refresh refused, the session over.
  const ended = collect(offline, "session");
  await rejects(offline.me(), 401, "invalid_token");
  assert.equal(offline.user, null);
  assert.deepEqual(ended, [null]);
});

test("a password change ends the other sessions and keeps this one, socket included", async () => {
  const storage = new MemoryStorage();
  const rc = await user({ storage });
  const elsewhere = client();
  await elsewhere.login(rc.user.username, PASSWORD);
  const statuses = collect(rc, "status");
  await online(rc);
  const before = storage.json("session").refresh_token;
  await rc.changePassword(PASSWORD, "another horse battery");
  assert.notEqual(storage.json("session").refresh_token, before);
  // The socket of the old login was closed; the client is back, on the new one.
  await until(() => statuses.length >= 5 && rc.status === "online", { what: "back online" });
  assert.deepEqual(statuses, ["connecting", "online", "offline", "connecting", "online"]);
  assert.equal(rc.user.username, storage.json("session").user.username);
  assert.equal((await rc.me()).id, rc.user.id);
  await rejects(elsewhere.me(), 401, "invalid_token");
  assert.equal(elsewhere.user, null);
  await rejects(client().login(rc.user.username, PASSWORD), 401, "invalid_credentials");
  // A wrong current password changes nothing, and the socket comes back.
  await rejects(rc.changePassword("wrong password", "a third horse"), 403, "invalid_credentials");
  await until(() => rc.status === "online", { what: "online again" });
  assert.ok(rc.user);
});

test("logging in as someone else switches the socket and forgets the first one's seqs and sends", async () => {
  const storage = new MemoryStorage();
  const [rc, bob] = await Promise.all([user({ storage }), user()]);
  const alice = rc.user;
  const direct = await rc.createDirect(bob.user.id);
  const alone = await rc.createGroup({ name: "only alice" });
  const events = collect(rc, "message.created");
  const errors = collect(rc, "error");
  await online(rc);
  await bob.request("POST", "/api/messages", { json: { chat_id: direct.id, content: "hi" } });
  await until(() => rc.lastSeq(direct.id) === 1);
  rc.disconnect();
  rc.send(alone.id, { content: "pending when bob logs in" });
  rc.connect();
  await rc.login(bob.user.username, PASSWORD);
  await until(() => rc.status === "online", { what: "online as bob" });
  assert.equal(rc.user.id, bob.user.id);
  assert.equal(rc.lastSeq(direct.id), undefined);
  assert.equal(storage.getItem("reverb.seqs"), null);
  assert.deepEqual([rc.outbox, storage.json("outbox")], [[], []]);
  // The socket is bob's: alice's own group is silent, the direct chat is not.
  const elsewhere = client();
  await elsewhere.login(alice.username, PASSWORD);
  await elsewhere.request("POST", "/api/messages", { json: { chat_id: alone.id, content: "x" } });
  await elsewhere.request("POST", "/api/messages", { json: { chat_id: direct.id, content: "to bob" } });
  await until(() => events.at(-1)?.message.content === "to bob", { what: "bob's message" });
  assert.ok(!events.some((e) => e.chat_id === alone.id));
  assert.deepEqual((await elsewhere.history(alone.id)).items.map((m) => m.content), ["x"]);
  assert.deepEqual(errors, []);
});
