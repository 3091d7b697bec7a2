"""The chat event model, checked against its own history.

1. Unread counts and read markers: a property test over random sends, reads, edits, deletions and
   client-id retries by the members of a group or direct chat. After every step each member's
   `unread_count` (on the chat and in their chat list) must equal a recount from the full history.
2. Replay: the event log of a varied scenario, replayed onto an empty snapshot, must rebuild the
   chat's messages, reactions, members, roles and name exactly as the REST resources show them.
3. Publish after commit: an event appended in a transaction that rolls back never reaches the bus,
   leaves no trace in the log, and does not use up its seq.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from reverb.api.deps import Services
from reverb.app import create_app
from reverb.config import Settings
from reverb.domain.events import Envelope, Event, MemberRemoved, encode
from reverb.realtime.bus import chat_topic
from reverb.storage import chats as chat_store
from reverb.storage.types import utcnow
from tests.conftest import serve_in_process
from tests.helpers import assert_problem, direct, events, group, register, send

Session = dict[str, Any]
Json = dict[str, Any]


# --- shared reads --------------------------------------------------------------------------------


async def get_chat(client: httpx.AsyncClient, who: Session, chat_id: str) -> Json:
    r = await client.get(f"/api/chats/{chat_id}", headers=who["headers"])
    assert r.status_code == 200, r.text
    body: Json = r.json()
    return body


async def listed_chat(client: httpx.AsyncClient, who: Session, chat_id: str) -> Json:
    """The chat as it appears in the caller's chat list (every page)."""
    found: list[Json] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/api/chats", params=params, headers=who["headers"])
        assert r.status_code == 200, r.text
        found += [c for c in r.json()["items"] if c["id"] == chat_id]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert len(found) == 1, found
    return found[0]


async def history(
    client: httpx.AsyncClient, who: Session, chat_id: str, *, limit: int = 100
) -> list[Json]:
    """Every message of the chat, ascending by seq, following `has_more` from `after=0`."""
    out: list[Json] = []
    while True:
        after = out[-1]["seq"] if out else 0
        r = await client.get(
            f"/api/messages/{chat_id}",
            params={"after": after, "limit": limit},
            headers=who["headers"],
        )
        assert r.status_code == 200, r.text
        page: list[Json] = r.json()["items"]
        out += page
        if not r.json()["has_more"]:
            break
        assert page, "has_more with an empty page"
    seqs = [m["seq"] for m in out]
    assert seqs == sorted(set(seqs)), seqs
    return out


async def members(client: httpx.AsyncClient, who: Session, chat_id: str) -> list[Json]:
    r = await client.get(f"/api/chats/{chat_id}/members", headers=who["headers"])
    assert r.status_code == 200, r.text
    items: list[Json] = r.json()["items"]
    return items


def uid(who: Session) -> str:
    return str(who["user"]["id"])


# --- 1. unread counts against a recount of the history -------------------------------------------

KINDS = ("send", "send", "read", "read", "edit", "delete", "retry")
Op = tuple[str, int, int]  # (kind, acting user, free argument the kind interprets)
OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 10_000)), max_size=25
)


@dataclass
class Sent:
    """What the test knows of one message it sent."""

    id: str
    sender: int
    seq: int
    client_id: str
    content: str
    deleted: bool = False
    edited: bool = False


@dataclass
class World:
    client: httpx.AsyncClient
    users: list[Session]
    chat_id: str
    sent: list[Sent] = field(default_factory=list)
    last_seq: int = 0
    marks: list[int] = field(default_factory=list)


async def observe(w: World) -> tuple[int, list[int]]:
    """Check every member's view against the full history; returns (last_seq, read markers)."""
    full = await history(w.client, w.users[0], w.chat_id)
    assert [m["id"] for m in full] == [s.id for s in w.sent]
    for m, s in zip(full, w.sent, strict=True):
        assert m["seq"] == s.seq
        assert m["sender"]["id"] == uid(w.users[s.sender])
        assert m["deleted"] is s.deleted
        assert m["content"] == s.content
        assert (m["edited_at"] is not None) is s.edited, m
    on_members = {
        m["user"]["id"]: m["last_read_seq"] for m in await members(w.client, w.users[0], w.chat_id)
    }
    assert set(on_members) == {uid(u) for u in w.users}

    last_seqs: set[int] = set()
    marks: list[int] = []
    for user in w.users:
        chat = await get_chat(w.client, user, w.chat_id)
        mark = chat["last_read_seq"]
        last_seqs.add(chat["last_seq"])
        assert 0 <= mark <= chat["last_seq"]
        recount = sum(
            1
            for m in full
            if m["sender"]["id"] != uid(user) and not m["deleted"] and m["seq"] > mark
        )
        assert chat["unread_count"] == recount, (user["user"]["username"], chat, full)
        listed = await listed_chat(w.client, user, w.chat_id)
        assert listed["unread_count"] == recount, listed
        assert listed["last_read_seq"] == mark
        assert listed["last_seq"] == chat["last_seq"]
        assert on_members[uid(user)] == mark
        marks.append(mark)
    assert len(last_seqs) == 1, last_seqs
    last_seq = last_seqs.pop()
    assert all(m["seq"] <= last_seq for m in full)
    return last_seq, marks


async def apply(w: World, kind: str, who: int, arg: int) -> int:
    """Perform one operation; returns how many events it must have logged."""
    user = w.users[who]
    mine = [s for s in w.sent if s.sender == who]
    if kind == "send":
        n = len(w.sent)
        body = await send(w.client, user, w.chat_id, f"message {n} from {who}", client_id=f"c{n}")
        assert body["seq"] == w.last_seq + 1, body
        w.sent.append(Sent(body["id"], who, body["seq"], f"c{n}", body["content"]))
        return 1
    if kind == "read":
        seq = arg % (w.last_seq + 4)
        r = await w.client.post(
            f"/api/chats/{w.chat_id}/read", json={"seq": seq}, headers=user["headers"]
        )
        assert r.status_code == 204, r.text
        return 0
    if not mine:
        return 0
    target = mine[arg % len(mine)]
    if kind == "retry":
        # The same client id again: the original message (as it stands now), no new event.
        r = await w.client.post(
            "/api/messages",
            json={"chat_id": w.chat_id, "content": "a retry", "client_id": target.client_id},
            headers=user["headers"],
        )
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["seq"]) == (target.id, target.seq)
        assert r.json()["content"] == target.content
        return 0
    if kind == "edit":
        content = f"edited {arg % 3}"
        r = await w.client.patch(
            f"/api/messages/{target.id}", json={"content": content}, headers=user["headers"]
        )
        if target.deleted:
            assert_problem(r, 409, "message_deleted")
            return 0
        assert r.status_code == 200, r.text
        changed = content != target.content
        target.content, target.edited = content, target.edited or changed
        assert r.json()["content"] == content
        assert (r.json()["edited_at"] is not None) is target.edited
        return 1 if changed else 0
    assert kind == "delete", kind
    r = await w.client.delete(f"/api/messages/{target.id}", headers=user["headers"])
    assert r.status_code == 204, r.text
    was_deleted = target.deleted
    target.deleted, target.content = True, ""
    return 0 if was_deleted else 1


async def unread_scenario(settings: Settings, chat_type: str, ops: list[Op]) -> None:
    async with serve_in_process(settings) as client:
        tag = uuid.uuid4().hex[:12]
        users = [await register(client, f"ev{tag}_{i}") for i in range(3)]
        if chat_type == "group":
            chat_id = await group(client, users[0], users[1], users[2])
        else:
            users = users[:2]  # a direct chat has exactly two members
            chat_id = await direct(client, users[0], users[1])
        w = World(client, users, chat_id)
        w.last_seq, w.marks = await observe(w)
        assert (w.last_seq, w.marks) == (0, [0] * len(users))
        for kind, raw_who, arg in ops:
            who = raw_who % len(users)
            before = (w.last_seq, list(w.marks))
            logged = await apply(w, kind, who, arg)
            w.last_seq, w.marks = await observe(w)
            assert w.last_seq == before[0] + logged, (kind, before, w.last_seq)
            # Read markers never move backwards, and a read sets exactly the contract's value.
            assert all(new >= old for new, old in zip(w.marks, before[1], strict=True))
            if kind == "read":
                wanted = max(before[1][who], min(arg % (before[0] + 4), before[0]))
                assert w.marks[who] == wanted, (arg, before, w.marks)
        log = await events(client, users[0], chat_id)
        assert [e["seq"] for e in log] == list(range(1, w.last_seq + 1))


@pytest.mark.parametrize("chat_type", ["group", "direct"])
@given(ops=OPS)
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_unread_count_matches_a_recount_of_history(
    settings: Settings, chat_type: str, ops: list[Op]
) -> None:
    # Each example registers its own users and chat, so examples sharing the database stay apart.
    asyncio.run(unread_scenario(settings, chat_type, ops))


# --- 2. replaying the event log rebuilds the chat -----------------------------------------------


@dataclass
class MessageState:
    content: str
    deleted: bool
    edited: bool
    seq: int
    reply_to_id: str | None
    reactions: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Snapshot:
    name: str
    description: str
    members: dict[str, str]  # user id -> role
    messages: dict[str, MessageState] = field(default_factory=dict)

    def apply(self, event: Json) -> None:
        kind = event["type"]
        if kind == "message.created":
            m = event["message"]
            assert m["id"] not in self.messages
            assert m["seq"] == event["seq"], event  # a message's seq is its created event's
            assert not m["deleted"] and m["edited_at"] is None and m["reactions"] == []
            self.messages[m["id"]] = MessageState(
                m["content"], False, False, event["seq"], m["reply_to_id"]
            )
        elif kind == "message.updated":
            m = event["message"]
            state = self.messages[m["id"]]
            assert not state.deleted and m["seq"] == state.seq
            assert m["edited_at"] is not None
            state.content, state.edited = m["content"], True
        elif kind == "message.deleted":
            state = self.messages[event["message_id"]]
            assert not state.deleted
            state.deleted, state.content = True, ""
            state.reactions.clear()  # a tombstone keeps no reactions
        elif kind == "reaction.updated":
            state = self.messages[event["message_id"]]
            reactors = state.reactions.setdefault(event["emoji"], set())
            assert (event["user_id"] in reactors) is not event["added"], event
            if event["added"]:
                reactors.add(event["user_id"])
            else:
                reactors.discard(event["user_id"])
        elif kind == "chat.updated":
            assert event["chat"]["last_seq"] == event["seq"]
            self.name, self.description = event["chat"]["name"], event["chat"]["description"]
            assert event["chat"]["member_count"] == len(self.members)
        elif kind == "member.added":
            assert event["user"]["id"] not in self.members
            self.members[event["user"]["id"]] = event["role"]
        elif kind == "member.updated":
            assert event["user_id"] in self.members
            self.members[event["user_id"]] = event["role"]
        elif kind == "member.removed":
            assert event["user_id"] in self.members
            del self.members[event["user_id"]]
        else:
            pytest.fail(f"unexpected event in the log: {event}")


class Steps:
    """Each step of a scenario and the events it must log (in any order within the step)."""

    def __init__(self, client: httpx.AsyncClient, chat_id: str) -> None:
        self.client, self.chat_id = client, chat_id
        self.seq = 0
        self.segments: list[tuple[int, int, list[str]]] = []

    async def logged(self, viewer: Session, *types: str) -> None:
        last_seq = (await get_chat(self.client, viewer, self.chat_id))["last_seq"]
        assert last_seq == self.seq + len(types), (types, self.seq, last_seq)
        self.segments.append((self.seq, last_seq, sorted(types)))
        self.seq = last_seq


def emoji_path(message_id: str, emoji: str) -> str:
    return f"/api/messages/{message_id}/reactions/{quote(emoji, safe='')}"


async def test_replaying_the_event_log_rebuilds_the_chat(client: httpx.AsyncClient) -> None:
    a, b, c, d, e = [await register(client) for _ in range(5)]
    chat_id = await group(client, a, b, c, name="Team")
    steps = Steps(client, chat_id)
    await steps.logged(a)  # a chat starts at seq 0 with the members it was created with

    # Messages, a reply, and a client-id retry that logs nothing.
    m1 = (await send(client, a, chat_id, "hello"))["id"]
    await steps.logged(a, "message.created")
    m2 = (await send(client, b, chat_id, "a reply", reply_to_id=m1))["id"]
    await steps.logged(a, "message.created")
    m3 = (await send(client, c, chat_id, "third", client_id="c-3"))["id"]
    r = await client.post(
        "/api/messages",
        json={"chat_id": chat_id, "content": "third", "client_id": "c-3"},
        headers=c["headers"],
    )
    assert (r.status_code, r.json()["id"]) == (200, m3), r.text
    await steps.logged(a, "message.created")

    # Edits; an edit to the same content is no change.
    for who, mid, content in ((a, m1, "hello, edited"), (b, m2, "reply v2"), (b, m2, "reply v3")):
        r = await client.patch(
            f"/api/messages/{mid}", json={"content": content}, headers=who["headers"]
        )
        assert r.status_code == 200, r.text
        await steps.logged(a, "message.updated")
    r = await client.patch(
        f"/api/messages/{m1}", json={"content": "hello, edited"}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    await steps.logged(a)

    # Reactions: repeats and removals of absent reactions log nothing.
    for method, who, mid, emoji, logs in (
        ("PUT", a, m1, "👍", True),
        ("PUT", b, m1, "👍", True),
        ("PUT", a, m1, "👍", False),
        ("PUT", c, m2, "🎉", True),
        ("PUT", a, m2, "+1", True),
        ("DELETE", b, m1, "👍", True),
        ("DELETE", b, m1, "👍", False),
        ("PUT", c, m3, "❤️", True),
        ("PUT", a, m3, "❤️", True),
    ):
        r = await client.request(method, emoji_path(mid, emoji), headers=who["headers"])
        assert r.status_code == 204, r.text
        await steps.logged(a, *(["reaction.updated"] if logs else []))

    # The sender deletes a message: one event, its reactions go with it; again logs nothing.
    for _ in range(2):
        r = await client.delete(f"/api/messages/{m3}", headers=c["headers"])
        assert r.status_code == 204, r.text
    await steps.logged(a, "message.deleted")
    assert_problem(
        await client.put(emoji_path(m3, "🎉"), headers=a["headers"]), 409, "message_deleted"
    )
    r = await client.patch(f"/api/messages/{m3}", json={"content": "back"}, headers=c["headers"])
    assert_problem(r, 409, "message_deleted")
    await steps.logged(a)

    # Rename and describe; the same name again is no change.
    for body, logs in (({"name": "Renamed"}, True), ({"name": "Renamed"}, False)):
        r = await client.patch(f"/api/chats/{chat_id}", json=body, headers=a["headers"])
        assert r.status_code == 200, r.text
        await steps.logged(a, *(["chat.updated"] if logs else []))
    r = await client.patch(
        f"/api/chats/{chat_id}", json={"description": "About"}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    await steps.logged(a, "chat.updated")

    # Members: add, promote, an admin adds and renames, role flips, removals.
    r = await client.post(
        f"/api/chats/{chat_id}/members", json={"user_id": uid(d)}, headers=a["headers"]
    )
    assert r.status_code == 201, r.text
    await steps.logged(a, "member.added")
    r = await client.post(
        f"/api/chats/{chat_id}/members", json={"user_id": uid(d)}, headers=a["headers"]
    )
    assert_problem(r, 409, "already_member")
    await steps.logged(a)
    for _ in range(2):  # the same role again is no change
        r = await client.patch(
            f"/api/chats/{chat_id}/members/{uid(b)}", json={"role": "admin"}, headers=a["headers"]
        )
        assert (r.status_code, r.json()["role"]) == (200, "admin"), r.text
    await steps.logged(a, "member.updated")
    r = await client.post(
        f"/api/chats/{chat_id}/members", json={"user_id": uid(e)}, headers=b["headers"]
    )
    assert r.status_code == 201, r.text
    await steps.logged(a, "member.added")
    r = await client.patch(
        f"/api/chats/{chat_id}", json={"name": "By an admin"}, headers=b["headers"]
    )
    assert r.status_code == 200, r.text
    await steps.logged(a, "chat.updated")
    for role in ("admin", "member"):
        r = await client.patch(
            f"/api/chats/{chat_id}/members/{uid(c)}", json={"role": role}, headers=a["headers"]
        )
        assert r.status_code == 200, r.text
        await steps.logged(a, "member.updated")
    m4 = (await send(client, d, chat_id, "from d"))["id"]
    await steps.logged(a, "message.created")
    r = await client.delete(
        f"/api/messages/{m4}", headers=b["headers"]
    )  # an admin deletes d's message
    assert r.status_code == 204, r.text
    await steps.logged(a, "message.deleted")
    r = await client.delete(f"/api/chats/{chat_id}/members/{uid(e)}", headers=b["headers"])
    assert r.status_code == 204, r.text
    await steps.logged(a, "member.removed")
    r = await client.delete(f"/api/chats/{chat_id}/members/{uid(b)}", headers=a["headers"])
    assert r.status_code == 204, r.text
    await steps.logged(a, "member.removed")
    r = await client.patch(
        f"/api/chats/{chat_id}/members/{uid(d)}", json={"role": "admin"}, headers=a["headers"]
    )
    assert r.status_code == 200, r.text
    await steps.logged(a, "member.updated")
    m5 = (await send(client, d, chat_id, "another reply", reply_to_id=m1))["id"]
    await steps.logged(a, "message.created")
    assert (await client.put(emoji_path(m5, "😀"), headers=a["headers"])).status_code == 204
    await steps.logged(a, "reaction.updated")

    # The owner leaves. Left: c, a plain member since the chat began, and d, an admin who joined
    # later: ownership passes to the longest-standing admin, d.
    r = await client.delete(f"/api/chats/{chat_id}/members/{uid(a)}", headers=a["headers"])
    assert r.status_code == 204, r.text
    await steps.logged(d, "member.removed", "member.updated")
    assert_problem(
        await client.get(f"/api/chats/{chat_id}/events", headers=a["headers"]),
        404,
        "chat_not_found",
    )

    # The new owner brings b back and promotes them; b writes and reacts; c leaves.
    r = await client.post(
        f"/api/chats/{chat_id}/members", json={"user_id": uid(b)}, headers=d["headers"]
    )
    assert r.status_code == 201, r.text
    await steps.logged(d, "member.added")
    r = await client.patch(
        f"/api/chats/{chat_id}/members/{uid(b)}", json={"role": "admin"}, headers=d["headers"]
    )
    assert r.status_code == 200, r.text
    await steps.logged(d, "member.updated")
    await send(client, b, chat_id, "back again", reply_to_id=m2)
    await steps.logged(d, "message.created")
    assert (await client.put(emoji_path(m2, "🎉"), headers=b["headers"])).status_code == 204
    await steps.logged(d, "reaction.updated")
    r = await client.delete(f"/api/chats/{chat_id}/members/{uid(c)}", headers=c["headers"])
    assert r.status_code == 204, r.text
    await steps.logged(d, "member.removed")

    # The log: seqs 1..N without gaps, each step's events where that step put them.
    log = await events(client, d, chat_id)
    n = len(log)
    assert [ev["seq"] for ev in log] == list(range(1, n + 1))
    assert n == steps.seq
    assert all(ev["chat_id"] == chat_id for ev in log)
    for start, end, types in steps.segments:
        assert sorted(ev["type"] for ev in log[start:end]) == types, (start, end)
    leave = next(seg for seg in steps.segments if seg[2] == ["member.removed", "member.updated"])
    removed, handed = sorted(log[leave[0] : leave[1]], key=lambda ev: str(ev["type"]))
    assert removed["user_id"] == uid(a)
    assert (handed["user_id"], handed["role"]) == (uid(d), "owner")
    # Paging the log in small steps gives the same events.
    paged: list[Json] = []
    while True:
        r = await client.get(
            f"/api/chats/{chat_id}/events",
            params={"after": len(paged), "limit": 4},
            headers=d["headers"],
        )
        assert r.status_code == 200, r.text
        paged += r.json()["items"]
        if not r.json()["has_more"]:
            break
    assert paged == log

    # Replay onto the chat as it was created ...
    snap = Snapshot(
        name="Team",
        description="",
        members={uid(a): "owner", uid(b): "member", uid(c): "member"},
    )
    for ev in log:
        snap.apply(ev)
    assert (snap.name, snap.description) == ("By an admin", "About")
    assert snap.members == {uid(d): "owner", uid(b): "admin"}

    # ... and compare with the REST resources as they stand.
    chat = await get_chat(client, d, chat_id)
    assert (chat["name"], chat["description"]) == (snap.name, snap.description)
    assert chat["last_seq"] == n
    assert chat["member_count"] == len(snap.members)
    assert chat["my_role"] == "owner"
    assert {m["user"]["id"]: m["role"] for m in await members(client, d, chat_id)} == snap.members

    full = await history(client, b, chat_id, limit=2)
    assert [m["id"] for m in full] == list(snap.messages)
    for m in full:
        state = snap.messages[m["id"]]
        assert m["seq"] == state.seq
        assert (m["content"], m["deleted"]) == (state.content, state.deleted), m
        assert (m["edited_at"] is not None) is state.edited, m
        assert m["reply_to_id"] == state.reply_to_id
        counts = {x["emoji"]: x["count"] for x in m["reactions"]}
        assert counts == {emoji: len(who) for emoji, who in state.reactions.items() if who}, m
        assert all(x["me"] is (uid(b) in state.reactions[x["emoji"]]) for x in m["reactions"])
    by_id = {m["id"]: m for m in full}
    assert (by_id[m3]["deleted"], by_id[m3]["content"], by_id[m3]["reactions"]) == (True, "", [])
    assert {x["emoji"]: x["count"] for x in by_id[m1]["reactions"]} == {"👍": 1}
    assert {x["emoji"]: x["count"] for x in by_id[m2]["reactions"]} == {"🎉": 2, "+1": 1}
    assert Counter(ev["type"] for ev in log)["message.created"] == len(full) == 6


# --- 3. events are published only after commit ---------------------------------------------------


class Rollback(Exception):
    """Raised inside a transaction to make it roll back."""


MARKER = "test.marker"


class Marker(Event, tag=MARKER):
    """An envelope the test publishes itself, addressed to nobody, to order what it hears."""


async def append_then_roll_back(
    services: Services, chat_id: str, user_id: str, expected_seq: int
) -> None:
    """Append a real event to the log in a transaction that then fails."""
    async with services.db.transaction() as tx:
        await chat_store.lock(tx.conn, chat_id)  # as every writer of a chat does first
        appended = await services.chats.log.append(
            tx,
            chat_id,
            lambda seq: MemberRemoved(chat_id=chat_id, seq=seq, user_id=user_id),
            now=utcnow(),
        )
        assert appended.seq == expected_seq
        # A marker published now: anything the append published before commit would reach a
        # subscriber ahead of it; anything published on rollback would reach it after the
        # marker and before the next real event.
        await services.bus.publish(Envelope(type=MARKER, data=encode(Marker())))
        raise Rollback


async def test_an_event_is_published_only_after_its_commit(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://reverb.test") as client:
            services: Services = app.state.services
            bus = services.bus
            assert services.redis is None  # the in-memory bus: lossless and in publish order
            a, b = await register(client), await register(client)
            chat_id = await group(client, a, b)
            await send(client, a, chat_id, "before")
            log_before = await events(client, a, chat_id)
            chat_before = await get_chat(client, a, chat_id)
            members_before = await members(client, a, chat_id)
            seq_before = chat_before["last_seq"]
            assert [ev["seq"] for ev in log_before] == [seq_before] == [1]

            async with bus.subscribe() as stream:
                await stream.follow({chat_topic(chat_id)})
                with pytest.raises(Rollback):
                    await append_then_roll_back(services, chat_id, uid(b), seq_before + 1)

                assert await events(client, a, chat_id) == log_before
                after = await get_chat(client, a, chat_id)
                assert after["last_seq"] == seq_before
                assert await members(client, a, chat_id) == members_before

                message = await send(client, b, chat_id, "after")
                first = await asyncio.wait_for(anext(stream), timeout=5)
                assert first.type == MARKER, first
                second = await asyncio.wait_for(anext(stream), timeout=5)

            # The rolled-back seq was not used up: the send took it.
            assert message["seq"] == seq_before + 1
            assert (second.type, second.chat_id, second.seq) == (
                "message.created",
                chat_id,
                message["seq"],
            )
            log_after = await events(client, a, chat_id)
            assert log_after[:-1] == log_before
            assert [ev["seq"] for ev in log_after] == [1, 2]
            assert json.loads(second.data) == log_after[-1]
            assert log_after[-1]["message"]["id"] == message["id"]
