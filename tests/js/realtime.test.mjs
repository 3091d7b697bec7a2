// The socket: live events in seq order and once, resume with `since`, gap fill, reconnect
// after the server closes the socket, and the typing/read/delivered helpers.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";

import {
  MemoryStorage, client, collect, online, range, recordingSocket, seqsOf, until, user,
} from "./helpers.mjs";

async function pair(aliceOptions = {}) {
  const [alice, bob] = await Promise.all([user(aliceOptions), user()]);
  const chat = await alice.createDirect(bob.user.id);
  return { alice, bob, chat };
}

async function post(rc, chatId, n, prefix = "m") {
  for (let i = 0; i < n; i++) {
    await rc.request("POST", "/api/messages", { json: { chat_id: chatId, content: `${prefix}${i}` } });
  }
}

test("live events arrive in seq order, each once", async () => {
  const { alice, bob, chat } = await pair();
  const events = collect(alice);
  const created = collect(alice, "message.created");
  await online(alice);
  await post(bob, chat.id, 20);
  await until(() => created.length >= 20, { what: "20 messages" });
  // One more, as the positive event after which no duplicate may still arrive.
  await post(bob, chat.id, 1, "last");
  await until(() => created.length >= 21);
  assert.deepEqual(seqsOf(events, chat.id), range(1, 21));
  assert.deepEqual(created.map((e) => e.message.content), [...range(0, 19).map((i) => `m${i}`), "last0"]);
  assert.equal(alice.lastSeq(chat.id), 21);
  alice.disconnect();
});

test("a client back from offline gets what it missed, once, in order (since)", async () => {
  const { alice, bob, chat } = await pair();
  const events = collect(alice);
  await online(alice);
  await post(bob, chat.id, 3);
  await until(() => alice.lastSeq(chat.id) === 3);
  alice.disconnect();
  assert.equal(alice.status, "offline");
  await post(bob, chat.id, 5, "missed");
  await online(alice);
  await until(() => alice.lastSeq(chat.id) === 8, { what: "the missed events" });
  await post(bob, chat.id, 1, "after");
  await until(() => alice.lastSeq(chat.id) === 9);
  assert.deepEqual(seqsOf(events, chat.id), range(1, 9));
  alice.disconnect();
});

test("a reload resumes from the seqs kept in storage", async () => {
  const storage = new MemoryStorage();
  const { alice, bob, chat } = await pair({ storage });
  await online(alice);
  await post(bob, chat.id, 2);
  await until(() => alice.lastSeq(chat.id) === 2);
  alice.disconnect();
  await post(bob, chat.id, 2, "missed");
  // A new page on the same storage: same account, same positions.
  const reloaded = client({ storage });
  assert.equal(reloaded.user.id, alice.user.id);
  assert.equal(reloaded.lastSeq(chat.id), 2);
  const events = collect(reloaded);
  await online(reloaded);
  await until(() => reloaded.lastSeq(chat.id) === 4);
  await post(bob, chat.id, 1, "after");
  await until(() => reloaded.lastSeq(chat.id) === 5);
  assert.deepEqual(seqsOf(events, chat.id), [3, 4, 5]);
  reloaded.disconnect();
});

test("a gap is filled from the event log before the event after it", async () => {
  const { alice, bob, chat } = await pair();
  await post(bob, chat.id, 5);
  const events = collect(alice);
  await online(alice); // the chat is not tracked: nothing is replayed
  // The app showed history up to seq 2 and tracks from there; the next live event is 6.
  alice.track(chat.id, 2);
  alice.track(chat.id, 1); // never lowers
  assert.equal(alice.lastSeq(chat.id), 2);
  await post(bob, chat.id, 1, "live");
  await until(() => alice.lastSeq(chat.id) === 6, { what: "seq 6" });
  await post(bob, chat.id, 1, "after");
  await until(() => alice.lastSeq(chat.id) === 7);
  assert.deepEqual(seqsOf(events, chat.id), [3, 4, 5, 6, 7]);
  assert.deepEqual(
    events.filter((e) => e.chat_id === chat.id).map((e) => e.message.content),
    ["m2", "m3", "m4", "live0", "after0"],
  );
  alice.disconnect();
});

test("a chat created with me is tracked from its chat.created on", async () => {
  const [alice, bob] = await Promise.all([user(), user()]);
  const events = collect(alice);
  const created = collect(alice, "chat.created");
  await online(alice);
  const group = await bob.createGroup({ name: "g", member_ids: [alice.user.id] });
  await until(() => created.length === 1, { what: "chat.created" });
  assert.equal(created[0].chat.id, group.id);
  assert.equal(alice.lastSeq(group.id), group.last_seq);
  await bob.request("PATCH", `/api/chats/${group.id}`, { json: { name: "renamed" } });
  await post(bob, group.id, 2);
  await until(() => alice.lastSeq(group.id) === group.last_seq + 3);
  assert.deepEqual(
    events.filter((e) => e.chat_id === group.id).map((e) => e.type),
    ["chat.updated", "message.created", "message.created"],
  );
  alice.disconnect();
});

test("closed by the server (4429), the client reconnects and misses nothing", async () => {
  const { closes, WebSocket } = recordingSocket();
  const { alice, bob, chat } = await pair({ WebSocket });
  const events = collect(alice);
  const statuses = collect(alice, "status");
  await online(alice);
  await post(bob, chat.id, 2);
  await until(() => alice.lastSeq(chat.id) === 2);
  // Markers far past their rate: refused, then the connection is closed for flooding.
  for (let i = 0; i < 200 && alice.status === "online"; i++) alice.markDelivered(chat.id, 1);
  await until(() => closes.includes(4429), { what: "the 4429 close" });
  await post(bob, chat.id, 3, "meanwhile");
  await until(() => alice.status === "online" && alice.lastSeq(chat.id) === 5, { what: "resumed" });
  await post(bob, chat.id, 1, "after");
  await until(() => alice.lastSeq(chat.id) === 6);
  assert.deepEqual(seqsOf(events, chat.id), range(1, 6));
  assert.deepEqual(statuses, ["connecting", "online", "connecting", "online"]);
  alice.disconnect();
  assert.equal(alice.status, "offline");
});

test("typing, delivered and read reach the other member", async () => {
  const { alice, bob, chat } = await pair();
  const seen = collect(bob);
  const signals = () => seen.filter((e) => ["typing", "read", "delivered"].includes(e.type));
  await Promise.all([online(alice), online(bob)]);
  alice.typing(chat.id);
  await until(() => signals().length === 1, { what: "typing" });
  await post(bob, chat.id, 2);
  await until(() => alice.lastSeq(chat.id) === 2);
  // One at a time: markers given together are written together, as one event.
  await alice.markDelivered(chat.id, 2);
  await until(() => signals().length === 2, { what: "delivered" });
  await alice.markRead(chat.id, 1);
  await until(() => signals().length === 3, { what: "read" });
  // Offline, the same helpers go over REST.
  alice.disconnect();
  await alice.markRead(chat.id, 2);
  await until(() => signals().length === 4, { what: "the REST read" });
  assert.deepEqual(
    signals().map((e) => [e.type, e.chat_id, e.user_id, e.seq]),
    [
      ["typing", chat.id, alice.user.id, undefined],
      ["delivered", chat.id, alice.user.id, 2],
      ["read", chat.id, alice.user.id, 1],
      ["read", chat.id, alice.user.id, 2],
    ],
  );
  const row = (await bob.members(chat.id)).items.find((m) => m.user.id === alice.user.id);
  assert.equal(row.last_read_seq, 2);
  assert.equal(row.last_delivered_seq, 2);
});

test("a gap that cannot be filled (the request fails) is resumed over a new socket instead", async () => {
  let failures = 0;
  const flaky = async (url, init) => {
    if (new URL(url).pathname.endsWith("/events") && failures++ === 0) throw new TypeError("fetch failed");
    return fetch(url, init);
  };
  const { closes, WebSocket } = recordingSocket();
  const { alice, bob, chat } = await pair({ fetch: flaky, WebSocket });
  await post(bob, chat.id, 5);
  const events = collect(alice);
  await online(alice);
  alice.track(chat.id, 2);
  await post(bob, chat.id, 1, "live");
  await until(() => alice.lastSeq(chat.id) === 6 && alice.status === "online", { what: "seq 6" });
  await post(bob, chat.id, 1, "after");
  await until(() => alice.lastSeq(chat.id) === 7);
  assert.equal(failures, 1, "the one failed fill, and no other fill: the replay came by socket");
  assert.equal(closes.length, 1, String(closes));
  assert.deepEqual(seqsOf(events, chat.id), [3, 4, 5, 6, 7]);
});

test("a connect that hangs (no answer to the upgrade) is given up and tried again", { timeout: 60_000 }, async () => {
  const storage = new MemoryStorage();
  await user({ storage });
  // A server that accepts TCP connections and never answers on them.
  const held = [];
  const silent = net.createServer((socket) => held.push(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${silent.address().port}`;
    const stuck = client({ baseUrl: url, storage }); // its token is fresh: no REST call first
    const statuses = collect(stuck, "status");
    stuck.connect();
    await until(() => held.length === 2, { timeout: 30_000, what: "a second attempt" });
    assert.deepEqual(statuses, ["connecting"]);
    stuck.disconnect();
    assert.deepEqual(statuses, ["connecting", "offline"]);
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
});
