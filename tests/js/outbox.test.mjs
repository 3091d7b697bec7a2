// The outbox: a send is stored at once, survives a reload, goes out with the same client_id
// until acknowledged, is stored by the server once however often it went out, and a send the
// server refuses for good leaves the outbox with an "error".
import assert from "node:assert/strict";
import { test } from "node:test";

import { MemoryStorage, client, collect, online, recordingSocket, until, user } from "./helpers.mjs";

async function stored(rc, chatId, clientId) {
  const page = await rc.history(chatId, { limit: 100 });
  return page.items.filter((m) => m.client_id === clientId);
}

test("a send made offline survives a reload and is stored once", async () => {
  const storage = new MemoryStorage();
  const [alice, bob] = await Promise.all([user({ storage }), user()]);
  const chat = await alice.createDirect(bob.user.id);
  const changes = collect(alice, "outbox");
  const item = alice.send(chat.id, { content: "written offline" });
  assert.equal(alice.status, "offline");
  assert.deepEqual(alice.outbox, [item]);
  assert.deepEqual(storage.json("outbox"), [item], "persisted at once");
  assert.deepEqual(changes, [[item]]);
  const beforeAck = storage.copy(); // as a tab closed before the ack would have left it

  // The page reloads: a new client on the same storage sends it, and is acknowledged.
  const reloaded = client({ storage });
  assert.deepEqual(reloaded.outbox, [item]);
  const acks = collect(reloaded, "ack");
  const created = collect(reloaded, "message.created");
  await online(reloaded);
  await until(() => acks.length === 1 && created.length === 1, { what: "the ack and the event" });
  assert.equal(acks[0].client_id, item.client_id);
  assert.equal(acks[0].message.content, "written offline");
  assert.equal(created[0].message.id, acks[0].message.id);
  assert.deepEqual(reloaded.outbox, []);
  assert.deepEqual(storage.json("outbox"), []);

  // The copy from before the ack sends it again: the server answers with the same message.
  const again = client({ storage: beforeAck });
  const againAcks = collect(again, "ack");
  await online(again);
  await until(() => againAcks.length === 1);
  assert.equal(againAcks[0].message.id, acks[0].message.id);
  assert.equal((await stored(alice, chat.id, item.client_id)).length, 1);
  // Nothing else was logged for it: the chat's next event is the next message.
  bob.send(chat.id, { content: "next" });
  bob.connect();
  await until(() => created.length === 2, { what: "bob's message" });
  assert.deepEqual(created.map((e) => e.seq), [1, 2]);
  for (const rc of [reloaded, again, bob]) rc.disconnect();
});

test("a send that went out twice is acknowledged, delivered and stored once", async () => {
  // A socket that writes every message.send twice: two acks come back for one send.
  const twice = [];
  const recording = recordingSocket();
  class Doubling extends recording.WebSocket {
    send(data) {
      super.send(data);
      if (JSON.parse(data).type === "message.send") {
        twice.push(data);
        super.send(data);
      }
    }
  }
  const [alice, bob] = await Promise.all([user({ WebSocket: Doubling }), user()]);
  const chat = await alice.createDirect(bob.user.id);
  const acks = collect(alice, "ack");
  const created = collect(alice, "message.created");
  const changes = collect(alice, "outbox");
  await online(alice);
  const first = alice.send(chat.id, { content: "one" });
  const second = alice.send(chat.id, { content: "two" });
  await until(() => acks.length === 2 && created.length === 2, { what: "two acks, two events" });
  // The doubled frames were answered: the server acked four times, the app heard two acks.
  const rawAcks = () => recording.frames.filter((f) => f.type === "ack");
  await until(() => rawAcks().length === 4, { what: "four acks on the wire" });
  assert.equal(twice.length, 2);
  assert.equal(new Set(rawAcks().map((a) => a.message.id)).size, 2);
  assert.deepEqual(acks.map((a) => a.client_id), [first.client_id, second.client_id]);
  assert.deepEqual(created.map((e) => e.seq), [1, 2]);
  assert.deepEqual(changes.at(-1), []);
  assert.equal((await stored(alice, chat.id, first.client_id)).length, 1);
  // The positive event after which a second copy would have shown: a third send, seq 3.
  alice.send(chat.id, { content: "three" });
  await until(() => created.length === 3);
  assert.deepEqual(created.map((e) => e.seq), [1, 2, 3]);
  alice.disconnect();
});

test("a send the server refuses for good leaves the outbox with an error", async () => {
  const [alice, bob, carol] = await Promise.all([user(), user(), user()]);
  const notMine = await bob.createDirect(carol.user.id);
  const mine = await alice.createDirect(bob.user.id);
  const errors = collect(alice, "error");
  const acks = collect(alice, "ack");
  await online(alice);
  const refused = alice.send(notMine.id, { content: "not a member" });
  const tooLong = alice.send(mine.id, { content: "x".repeat(4001) });
  const fine = alice.send(mine.id, { content: "fine" });
  await until(() => errors.length === 2 && acks.length === 1, { what: "two errors and an ack" });
  assert.deepEqual(
    errors.map((e) => [e.ref, e.code]),
    [
      [refused.client_id, "chat_not_found"],
      [tooLong.client_id, "content_too_long"],
    ],
  );
  assert.ok(errors.every((e) => e.detail));
  assert.equal(acks[0].client_id, fine.client_id);
  assert.deepEqual(alice.outbox, []);
  alice.disconnect();
});

test("two tabs on one storage keep each other's pending sends", async () => {
  const storage = new MemoryStorage();
  const [alice, bob] = await Promise.all([user({ storage }), user()]);
  const chat = await alice.createDirect(bob.user.id);
  const otherTab = client({ storage });
  const first = alice.send(chat.id, { content: "from the first tab" });
  const second = otherTab.send(chat.id, { content: "from the second tab" });
  assert.deepEqual(storage.json("outbox").map((i) => i.client_id), [first.client_id, second.client_id]);
  // A reload sends both; each is acknowledged and stored once.
  const reloaded = client({ storage });
  const acks = collect(reloaded, "ack");
  await online(reloaded);
  await until(() => acks.length === 2, { what: "two acks" });
  assert.deepEqual(new Set(acks.map((a) => a.message.content)), new Set(["from the first tab", "from the second tab"]));
  assert.deepEqual(storage.json("outbox"), []);
  const history = await bob.history(chat.id);
  assert.equal(history.items.length, 2);
});

test("sends refused as rate_limited are tried again, and stored in the order written", async () => {
  // REVERB_LIMITED_URL: a server on the same database allowing 5 messages a second.
  const limitedUrl = process.env.REVERB_LIMITED_URL;
  assert.ok(limitedUrl, "REVERB_LIMITED_URL is set");
  const { frames, WebSocket } = recordingSocket();
  const [alice, bob] = await Promise.all([user({ baseUrl: limitedUrl, WebSocket }), user()]);
  const chat = await alice.createDirect(bob.user.id);
  const acks = collect(alice, "ack");
  const errors = collect(alice, "error");
  const written = Array.from({ length: 12 }, (_, i) => `burst ${i}`);
  for (const content of written) alice.send(chat.id, { content });
  await online(alice);
  await until(() => acks.length === 12, { timeout: 30_000, what: "12 acks" });
  const refusals = frames.filter((f) => f.type === "error").map((f) => f.code);
  assert.ok(refusals.length > 0 && refusals.every((c) => c === "rate_limited"), String(refusals));
  assert.deepEqual(errors, []);
  assert.deepEqual(acks.map((a) => a.message.content), written);
  const history = await bob.history(chat.id);
  assert.deepEqual(history.items.map((m) => m.content), written);
  assert.deepEqual(history.items.map((m) => m.seq), written.map((_, i) => i + 1));
});
