// The REST helpers against the real server: each reaches its endpoint and returns its answer.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

import { URL_, client, user } from "./helpers.mjs";

test("the module is served at /web/reverb-client.js as JavaScript, unchanged", async () => {
  const res = await fetch(`${URL_}/web/reverb-client.js`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^(text|application)\/javascript/);
  const local = await readFile(new URL("../../reverb/web/reverb-client.js", import.meta.url), "utf8");
  assert.equal(await res.text(), local);
});

test("users, chats, members and messages through the helpers", async () => {
  const [alice, bob, carol] = await Promise.all([user(), user(), user()]);
  const me = await alice.updateMe({ display_name: "Alice", bio: "hi" });
  assert.deepEqual([me.display_name, me.bio, alice.user.display_name], ["Alice", "hi", "Alice"]);
  assert.equal((await alice.getUser(bob.user.id)).username, bob.user.username);
  const found = await alice.searchUsers(bob.user.username, { limit: 5 });
  assert.deepEqual(found.items.map((u) => u.id), [bob.user.id]);
  assert.ok("next_cursor" in found);

  const direct = await alice.createDirect(bob.user.id);
  assert.equal((await alice.createDirect(bob.user.id)).id, direct.id, "the existing direct chat");
  const group = await alice.createGroup({ name: "Team", description: "d", member_ids: [bob.user.id] });
  assert.equal((await alice.updateChat(group.id, { name: "Team 2" })).name, "Team 2");
  assert.equal((await alice.chat(group.id)).name, "Team 2");
  const chats = await alice.chats({ limit: 1 });
  assert.equal(chats.items.length, 1);
  assert.ok(chats.next_cursor, "a second page");
  const rest = await alice.chats({ cursor: chats.next_cursor });
  assert.deepEqual(
    new Set([...chats.items, ...rest.items].map((c) => c.id)),
    new Set([direct.id, group.id]),
  );
  await alice.addMember(group.id, carol.user.id);
  await alice.setRole(group.id, carol.user.id, "admin");
  let members = (await alice.members(group.id)).items;
  assert.equal(members.find((m) => m.user.id === carol.user.id).role, "admin");
  await alice.removeMember(group.id, carol.user.id);
  members = (await alice.members(group.id)).items;
  assert.deepEqual(new Set(members.map((m) => m.user.id)), new Set([alice.user.id, bob.user.id]));

  const sent = await alice.request("POST", "/api/messages", {
    json: { chat_id: group.id, content: "hello searchable world" },
  });
  assert.equal((await alice.editMessage(sent.id, "hello searchable planet")).content, "hello searchable planet");
  assert.equal(await alice.react(sent.id, "👍"), null);
  let history = await bob.history(group.id, { limit: 10 });
  assert.deepEqual(history.items.at(-1).reactions, [{ emoji: "👍", count: 1, me: false }]);
  await alice.unreact(sent.id, "👍");
  const hits = await bob.searchMessages("planet", group.id);
  assert.deepEqual(hits.items.map((m) => m.id), [sent.id]);
  await alice.deleteMessage(sent.id);
  history = await bob.history(group.id, { after: 0, limit: 100 });
  assert.equal(history.has_more, false);
  assert.ok(history.items.at(-1).deleted);
  const log = await bob.events(group.id, { after: 0 });
  assert.deepEqual(
    log.items.map((e) => e.type),
    [
      "chat.updated", "member.added", "member.updated", "member.removed", "message.created",
      "message.updated", "reaction.updated", "reaction.updated", "message.deleted",
    ],
  );
  assert.deepEqual(log.items.map((e) => e.seq), log.items.map((_, i) => i + 1));
});

test("uploads, providers and the social login start URL", async () => {
  const rc = await user();
  const media = await rc.upload(new Blob(["hello"], { type: "text/plain" }), { filename: "a.txt" });
  assert.deepEqual([media.filename, media.size], ["a.txt", 5]);
  const res = await fetch(new URL(media.url, URL_));
  assert.equal(await res.text(), "hello");
  assert.deepEqual(await client().providers(), []);
  const start = new URL(rc.oauthStartUrl("git hub", "http://app.example/back?x=1"));
  assert.equal(start.pathname, "/api/auth/oauth/git%20hub/start");
  assert.equal(start.searchParams.get("redirect_uri"), "http://app.example/back?x=1");
});
