"""Group commit of message sends: concurrent sends share a transaction, and each still gets
exactly the answer it would get alone (seqs gap-free, errors its own, retries found, events
published after commit in seq order)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from reverb import ids
from reverb.api.deps import Services
from reverb.app import create_app
from reverb.config import Settings
from reverb.domain.events import Envelope, MessageDeleted
from reverb.domain.users import User
from reverb.domain.wire import EncodedMessage, MessageView, encode
from reverb.errors import ReverbError
from reverb.realtime.bus import chat_topic
from reverb.services.chats import membership
from reverb.services.messages import MessageService
from reverb.services.sendbatch import Sent
from reverb.storage import chats as chat_store
from reverb.storage import events as event_store
from reverb.storage import media as media_store
from reverb.storage import messages as message_store
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.types import utcnow
from tests.helpers import events, group, register, send

Session = dict[str, Any]
WAIT_S = 30  # a bound for the deadlock case only; every wait below ends on a condition


@dataclass
class App:
    client: httpx.AsyncClient
    services: Services

    @property
    def messages(self) -> MessageService:
        return self.services.messages

    async def user(self, session: Session) -> User:
        async with self.services.db.read() as conn:
            user = await user_store.get(conn, session["user"]["id"])
        assert user is not None
        return user


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[App]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://reverb.test") as client:
            yield App(client, app.state.services)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    async with running(settings) as a:
        yield a


@dataclass(frozen=True)
class Batches:
    """The group-commit metrics at one moment; subtract two to see what happened between."""

    count: float
    sends: float
    fallbacks: float

    @staticmethod
    def now() -> Batches:
        def value(name: str) -> float:
            return REGISTRY.get_sample_value(name) or 0.0

        return Batches(
            value("reverb_send_batch_size_count"),
            value("reverb_send_batch_size_sum"),
            value("reverb_send_batch_fallbacks_total"),
        )

    def __sub__(self, other: Batches) -> Batches:
        return Batches(
            self.count - other.count, self.sends - other.sends, self.fallbacks - other.fallbacks
        )


def error_of(outcome: object) -> tuple[object, ...]:
    """What a client learns from a refusal."""
    assert isinstance(outcome, ReverbError), outcome
    return (outcome.code, outcome.status, outcome.detail, outcome.errors)


def sent(outcome: object) -> tuple[MessageView, bool]:
    """The message a send answered with (its JSON is the view's), and whether it is new."""
    assert isinstance(outcome, tuple), outcome
    message, new = outcome
    assert isinstance(message, EncodedMessage) and isinstance(new, bool)
    assert message.json == encode(message.view)
    return message.view, new


def json_of(view: MessageView) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(encode(view))
    return parsed


async def together(*sends: Awaitable[Sent]) -> list[object]:
    """Hand every send in before any batch starts: they form one batch (if few enough)."""
    return list(await asyncio.gather(*sends, return_exceptions=True))


async def test_concurrent_sends_are_batched_gap_free_and_published_after_commit(
    app: App,
) -> None:
    people = [await register(app.client) for _ in range(4)]
    users = [await app.user(p) for p in people]
    chats = [await group(app.client, people[0], *people[1:], name=f"c{i}") for i in range(5)]
    rounds = 10  # sequential sends per (chat, sender): 5 chats x 4 senders x 10 = 200
    total = len(chats) * len(users) * rounds
    seen: dict[str, list[int]] = defaultdict(list)

    async def listen(stream: AsyncIterator[Envelope]) -> None:
        """Every message.created as it is published, checked against the committed log."""
        count = 0
        async for env in stream:
            if env.type != "message.created":
                continue
            assert env.chat_id is not None and env.seq is not None
            # Published only after commit: the event is already readable by anyone.
            async with app.services.db.read() as conn:
                logged = await event_store.after(conn, env.chat_id, env.seq - 1, 1)
            assert [(r.seq, r.data.encode()) for r in logged] == [(env.seq, env.data)]
            seen[env.chat_id].append(env.seq)
            count += 1
            if count == total:
                return

    async def sender(chat_id: str, who: int) -> list[MessageView]:
        mine = []
        for k in range(rounds):
            content = f"{chat_id[-6:]} from {who} #{k}"
            view, new = sent(
                await app.messages.send(
                    me=users[who], chat_id=chat_id, content=content, client_id=f"{who}-{k}"
                )
            )
            assert new
            assert (view.chat_id, view.sender.id, view.content, view.client_id) == (
                chat_id,
                users[who].id,
                content,
                f"{who}-{k}",
            )
            mine.append(view)
        # One caller's sends commit in the order it made them.
        assert [v.seq for v in mine] == sorted(v.seq for v in mine)
        return mine

    before = Batches.now()
    async with app.services.bus.subscribe() as stream:
        await stream.follow({chat_topic(c) for c in chats})
        listener = asyncio.create_task(listen(stream))
        results = await asyncio.gather(
            *(sender(c, who) for c in chats for who in range(len(users)))
        )
        await asyncio.wait_for(listener, WAIT_S)
    done = Batches.now() - before
    assert done.sends == total and done.fallbacks == 0
    assert 1 <= done.count <= total / 4, done  # 20 concurrent senders: batches of many

    views = {v.id: v for mine in results for v in mine}
    assert len(views) == total
    for chat_id in chats:
        mine = sorted((v for v in views.values() if v.chat_id == chat_id), key=lambda v: v.seq)
        expected = list(range(1, len(users) * rounds + 1))
        assert [v.seq for v in mine] == expected
        assert seen[chat_id] == expected  # published in seq order
        log = await events(app.client, people[1], chat_id)
        assert [(e["type"], e["seq"]) for e in log] == [("message.created", s) for s in expected]
        assert [e["message"] for e in log] == [json_of(v) for v in mine]
        r = await app.client.get(
            f"/api/messages/{chat_id}",
            params={"after": 0, "limit": 100},
            headers=people[2]["headers"],
        )
        assert r.json()["items"] == [json_of(v) for v in mine]
        listed = await app.client.get(f"/api/chats/{chat_id}", headers=people[0]["headers"])
        assert listed.json()["last_seq"] == len(mine)
        assert listed.json()["last_message"] == json_of(mine[-1])


class Rollback(Exception):
    """Raised inside a transaction to make it roll back."""


MARKER = Envelope(type="test.marker", data=b"{}")


async def test_a_batch_of_events_is_published_only_after_its_commit(app: App) -> None:
    a, b = await register(app.client), await register(app.client)
    chat = await group(app.client, a, b)
    first = await send(app.client, a, chat, "one")
    services = app.services

    async def record_two(*, then_fail: bool) -> list[int]:
        async with services.db.transaction() as tx:
            await chat_store.lock(tx.conn, chat)
            last = await chat_store.take_seqs(
                tx.conn, chat, 2, last_message_id=first["id"], now=utcnow()
            )
            seqs = [last - 1, last]
            batch = [MessageDeleted(chat_id=chat, seq=s, message_id=first["id"]) for s in seqs]
            await services.messages.log.record_many(tx, batch, now=utcnow())
            # Anything published before commit would reach a subscriber ahead of this.
            await services.bus.publish(MARKER)
            if then_fail:
                raise Rollback
        return seqs

    async with services.bus.subscribe() as stream:
        await stream.follow({chat_topic(chat)})
        with pytest.raises(Rollback):
            await record_two(then_fail=True)
        assert await record_two(then_fail=False) == [2, 3]  # the rolled-back seqs were not used
        heard = [await asyncio.wait_for(anext(stream), WAIT_S) for _ in range(4)]
    # Nothing of the rolled-back batch; the committed one after its marker, in seq order.
    assert [(e.type, e.seq) for e in heard] == [
        (MARKER.type, None),
        (MARKER.type, None),
        ("message.deleted", 2),
        ("message.deleted", 3),
    ]
    log = await events(app.client, a, chat)
    assert [e["seq"] for e in log] == [1, 2, 3]
    assert [json.loads(e.data) for e in heard[2:]] == log[1:]


async def test_concurrent_http_sends(app: App) -> None:
    people = [await register(app.client) for _ in range(3)]
    chat = await group(app.client, *people)
    bodies = [(people[i % 3], f"over http {i}") for i in range(30)]
    answers = await asyncio.gather(
        *(
            app.client.post(
                "/api/messages",
                json={"chat_id": chat, "content": content, "client_id": f"h{i}"},
                headers=who["headers"],
            )
            for i, (who, content) in enumerate(bodies)
        )
    )
    assert [r.status_code for r in answers] == [201] * 30
    got = [r.json() for r in answers]
    assert [(m["content"], m["sender"]["id"]) for m in got] == [
        (content, who["user"]["id"]) for who, content in bodies
    ]
    assert sorted(m["seq"] for m in got) == list(range(1, 31))
    log = await events(app.client, people[0], chat)
    assert [e["message"] for e in log] == sorted(got, key=lambda m: m["seq"])


BAD_REPLY = (
    "validation_error",
    422,
    "reply_to_id is not a message of this chat",
    [
        {
            "loc": ["body", "reply_to_id"],
            "msg": "reply_to_id is not a message of this chat",
            "type": "validation_error",
        }
    ],
)


async def test_bad_sends_fail_alone_with_the_errors_of_a_lone_send(app: App) -> None:
    a, b, outsider = [await register(app.client) for _ in range(3)]
    me_a, me_b, me_out = await app.user(a), await app.user(b), await app.user(outsider)
    chat = await group(app.client, a, b)
    other = await group(app.client, a, b)
    original = await send(app.client, a, chat, "question?")
    foreign = await send(app.client, a, other, "elsewhere")
    async with app.services.db.read() as conn:
        with pytest.raises(ReverbError) as not_member:
            await membership(conn, chat, me_out.id)
    send_ = app.messages.send

    before = Batches.now()
    outcomes = await together(
        send_(me=me_a, chat_id=chat, content="one"),
        send_(me=me_out, chat_id=chat, content="not a member"),
        send_(me=me_a, chat_id="0" * 32, content="no such chat"),
        send_(me=me_a, chat_id="nope", content="not even an id"),
        send_(me=me_b, chat_id=chat, content="x", reply_to_id=foreign["id"]),
        send_(me=me_b, chat_id=chat, content="x", reply_to_id="xyz"),
        send_(me=me_b, chat_id=chat, content="x", reply_to_id="0" * 32),
        send_(me=me_b, chat_id=chat, content="answer", reply_to_id=original["id"]),
        send_(me=me_a, chat_id=other, content="two"),
    )
    done = Batches.now() - before
    # One batch; the malformed chat id is refused before it.
    assert (done.count, done.sends, done.fallbacks) == (1, 8, 0)

    gone = error_of(not_member.value)
    assert gone[:2] == ("chat_not_found", 404)
    assert [error_of(o) for o in outcomes[1:4]] == [gone] * 3
    assert [error_of(o) for o in outcomes[4:7]] == [BAD_REPLY] * 3

    one, answer, two = sent(outcomes[0]), sent(outcomes[7]), sent(outcomes[8])
    assert (one[1], answer[1], two[1]) == (True, True, True)
    assert answer[0].reply_to_id == original["id"]
    log = await events(app.client, b, chat)
    assert [(e["seq"], e["message"]["content"]) for e in log] == [
        (1, "question?"),
        (2, "one"),
        (3, "answer"),
    ]
    assert [e["message"] for e in log[1:]] == [json_of(one[0]), json_of(answer[0])]
    assert [e["message"]["content"] for e in await events(app.client, b, other)] == [
        "elsewhere",
        "two",
    ]


async def test_client_ids_inside_a_batch_and_against_stored_messages(app: App) -> None:
    a, b = await register(app.client), await register(app.client)
    me_a, me_b = await app.user(a), await app.user(b)
    chat = await group(app.client, a, b)
    other = await group(app.client, a, b)
    stored_a = await send(app.client, a, chat, "a's original", client_id="c-1")
    stored_b = await send(app.client, b, chat, "b's original", client_id="c-1")
    # Retries answer with the message as its sender sees it now: reactions and `me` included.
    for who, message, emoji in ((a, stored_a, "🎉"), (a, stored_b, "👍")):
        r = await app.client.put(
            f"/api/messages/{message['id']}/reactions/{emoji}", headers=who["headers"]
        )
        assert r.status_code == 204
    send_ = app.messages.send

    before = Batches.now()
    outcomes = await together(
        send_(me=me_a, chat_id=chat, content="changed?", client_id="c-1"),
        send_(me=me_a, chat_id=chat, content="first", client_id="c-2"),
        send_(me=me_a, chat_id=chat, content="second", client_id="c-2"),
        send_(me=me_b, chat_id=chat, content="b's c-2", client_id="c-2"),
        send_(me=me_a, chat_id=other, content="c-2 elsewhere", client_id="c-2"),
        send_(me=me_a, chat_id=chat, content="bad", client_id="c-3", reply_to_id="0" * 32),
        send_(me=me_a, chat_id=chat, content="good c-3", client_id="c-3"),
        send_(me=me_b, chat_id=chat, content="changed too?", client_id="c-1"),
        send_(me=me_a, chat_id=chat, content="third", client_id="c-2"),
    )
    done = Batches.now() - before
    assert (done.count, done.sends, done.fallbacks) == (1, 9, 0)

    retry_a, first, second, theirs, elsewhere = (sent(o) for o in outcomes[:5])
    good, retry_b, third = sent(outcomes[6]), sent(outcomes[7]), sent(outcomes[8])
    assert error_of(outcomes[5]) == BAD_REPLY
    answers = (retry_a, first, second, theirs, elsewhere, good, retry_b, third)
    assert [new for _, new in answers] == [False, True, False, True, True, True, False, False]
    assert json_of(retry_a[0]) == {
        **stored_a,
        "reactions": [{"emoji": "🎉", "count": 1, "me": True}],
    }
    assert json_of(retry_b[0]) == {
        **stored_b,
        "reactions": [{"emoji": "👍", "count": 1, "me": False}],
    }
    assert second[0] == third[0] == first[0]
    assert [v.content for v, _ in (first, theirs, good)] == ["first", "b's c-2", "good c-3"]

    log = [e for e in await events(app.client, a, chat) if e["type"] == "message.created"]
    assert [(e["seq"], e["message"]["content"]) for e in log] == [
        (1, "a's original"),
        (2, "b's original"),
        (5, "first"),
        (6, "b's c-2"),
        (7, "good c-3"),
    ]
    assert [e["message"]["content"] for e in await events(app.client, a, other)] == [
        "c-2 elsewhere"
    ]


POISON = "poison"
POISON_DDL = {
    "sqlite": (
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages "
        f"WHEN NEW.content = '{POISON}' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.content = '{POISON}' THEN RAISE EXCEPTION 'poison refused'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages "
        "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ),
}
CURE_DDL = {
    "sqlite": ("DROP TRIGGER IF EXISTS refuse_poison",),
    "postgresql": (
        "DROP TRIGGER IF EXISTS refuse_poison ON messages",
        "DROP FUNCTION IF EXISTS refuse_poison()",
    ),
}


async def ddl(db: Database, statements: dict[str, tuple[str, ...]]) -> None:
    async with db.transaction() as tx:
        for statement in statements[db.engine.dialect.name]:
            await tx.conn.execute(text(statement))


async def test_a_batch_the_database_refuses_is_retried_one_send_at_a_time(
    settings: Settings, db: Database
) -> None:
    # The database itself refuses one message (a trigger), which fails the whole batch.
    # Installed before the app connects, so no connection holds a plan made without it.
    await ddl(db, POISON_DDL)
    try:
        async with running(settings) as app:
            a, b = await register(app.client), await register(app.client)
            me_a, me_b = await app.user(a), await app.user(b)
            chat = await group(app.client, a, b)
            other = await group(app.client, a, b)
            send_ = app.messages.send

            before = Batches.now()
            outcomes = await together(
                send_(me=me_a, chat_id=chat, content="good 1"),
                send_(me=me_b, chat_id=chat, content=POISON, client_id="p-1"),
                send_(me=me_a, chat_id=other, content="good 2", client_id="g-2"),
                send_(me=me_a, chat_id=other, content="good 2 again", client_id="g-2"),
                send_(me=me_b, chat_id=chat, content="good 3"),
                send_(me=me_a, chat_id=chat, content="x", reply_to_id="0" * 32),
            )
            done = Batches.now() - before
            assert (done.count, done.sends, done.fallbacks) == (1, 6, 1)

            good_1, good_2, repeat, good_3 = (sent(outcomes[i]) for i in (0, 2, 3, 4))
            assert isinstance(outcomes[1], DBAPIError) and "poison refused" in str(outcomes[1])
            assert error_of(outcomes[5]) == BAD_REPLY
            assert (good_1[1], good_2[1], repeat[1], good_3[1]) == (True, True, False, True)
            assert repeat[0] == good_2[0]
            assert [(v.chat_id, v.seq) for v in (good_1[0], good_2[0], good_3[0])] == [
                (chat, 1),
                (other, 1),
                (chat, 2),
            ]
            log = await events(app.client, a, chat)
            assert [e["message"] for e in log] == [json_of(good_1[0]), json_of(good_3[0])]
            assert [e["message"] for e in await events(app.client, a, other)] == [
                json_of(good_2[0])
            ]

            await ddl(db, CURE_DDL)
            cured = await send(app.client, b, chat, POISON, client_id="p-1")
            assert cured["seq"] == 3
    finally:
        await ddl(db, CURE_DDL)


async def test_callers_that_stop_waiting_do_not_disturb_the_others(app: App) -> None:
    a, b = await register(app.client), await register(app.client)
    me_a, me_b = await app.user(a), await app.user(b)
    chat = await group(app.client, a, b)

    def start(me: User, content: str) -> asyncio.Task[Sent]:
        return asyncio.create_task(app.messages.send(me=me, chat_id=chat, content=content))

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            await asyncio.sleep(0)

    # Gone before its batch began.
    early = start(me_a, "gone early")
    others = [start(me_b, f"stays {i}") for i in range(5)]
    await until(lambda: app.messages.batches.queued == 6)  # every send handed in
    early.cancel()
    first = await asyncio.gather(*others)
    # Gone while its batch runs.
    before = Batches.now()
    late = start(me_a, "gone late")
    more = [start(me_b, f"stays too {i}") for i in range(5)]
    await until(lambda: (Batches.now() - before).count == 1)
    late.cancel()
    results = first + await asyncio.gather(*more)
    for task in (early, late):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert all(new for _, new in results)
    after = await send(app.client, a, chat, "after")

    log = await events(app.client, a, chat)
    contents = [e["message"]["content"] for e in log]
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert contents[-1] == "after" and after["seq"] == len(log)
    assert {v.view.content for v, _ in results} <= set(contents)
    assert len(contents) == len(set(contents)) and set(contents) <= {
        "gone early",
        "gone late",
        "after",
        *(v.view.content for v, _ in results),
    }


async def test_a_lone_send_is_committed_at_once_and_leaves_no_task(app: App) -> None:
    a, b = await register(app.client), await register(app.client)
    me = await app.user(a)
    chat = await group(app.client, a, b)

    before = Batches.now()
    view, new = sent(await app.messages.send(me=me, chat_id=chat, content="solo", client_id="s-1"))
    assert (Batches.now() - before) == Batches(1, 1, 0)
    assert new and view.seq == 1 and view.content == "solo"
    # Idle again: no committer task waits around between bursts.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "send batches"]

    again, new = sent(await app.messages.send(me=me, chat_id=chat, content="dup", client_id="s-1"))
    assert (again, new) == (view, False)
    body = await send(app.client, a, chat, "over http")
    assert body["seq"] == 2
    assert [e["message"] for e in await events(app.client, b, chat)] == [json_of(view), body]


async def test_close_answers_the_sends_handed_in_and_refuses_later_ones(app: App) -> None:
    a, b = await register(app.client), await register(app.client)
    me = await app.user(a)
    chat = await group(app.client, a, b)
    tasks = [
        asyncio.create_task(app.messages.send(me=me, chat_id=chat, content=f"m{i}"))
        for i in range(5)
    ]
    while app.messages.batches.queued < 5:
        await asyncio.sleep(0)
    await app.messages.close()
    # Committed by the time close returns.
    assert [e["message"]["content"] for e in await events(app.client, a, chat)] == [
        f"m{i}" for i in range(5)
    ]
    assert [(await t)[0].view.seq for t in tasks] == [1, 2, 3, 4, 5]
    with pytest.raises(RuntimeError):
        await app.messages.send(me=me, chat_id=chat, content="too late")


REFUSED_ATTACHMENTS = (
    "validation_error",
    422,
    "each attachment must be your own upload, not yet attached",
    [
        {
            "loc": ["body", "attachment_ids"],
            "msg": "each attachment must be your own upload, not yet attached",
            "type": "validation_error",
        }
    ],
)


async def upload(app: App, who: Session, name: str) -> str:
    r = await app.client.post(
        "/api/media",
        files={"file": (name, f"contents of {name}".encode(), "text/plain")},
        headers=who["headers"],
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def attached_to(app: App, media_ids: list[str]) -> list[str | None]:
    async with app.services.db.read() as conn:
        rows = await media_store.get_many(conn, media_ids)
    return [rows[m].message_id for m in media_ids]


async def test_attachments_are_claimed_in_the_batch_and_a_refused_send_fails_alone(
    app: App,
) -> None:
    a, b = await register(app.client), await register(app.client)
    me_a, me_b = await app.user(a), await app.user(b)
    chat = await group(app.client, a, b)
    other = await group(app.client, a, b)
    kept = await upload(app, a, "kept.txt")
    stored = await send(app.client, a, chat, "sent before", client_id="k", attachment_ids=[kept])
    one, two, mine_too = [await upload(app, a, f"{n}.txt") for n in ("one", "two", "mine_too")]
    theirs = await upload(app, b, "theirs.txt")
    send_ = app.messages.send

    before = Batches.now()
    outcomes = await together(
        send_(me=me_a, chat_id=chat, content="two files", client_id="c", attachment_ids=[two, one]),
        send_(me=me_a, chat_id=chat, content="not mine", attachment_ids=[theirs]),
        send_(me=me_a, chat_id=chat, content="attached before", attachment_ids=[kept]),
        send_(me=me_a, chat_id=other, content="plain"),
        # Claimed by the first send of this very batch.
        send_(me=me_a, chat_id=chat, content="", attachment_ids=[mine_too, one]),
        send_(me=me_a, chat_id=chat, content="retry", client_id="c", attachment_ids=[two, one]),
        send_(me=me_b, chat_id=chat, content="b's own", attachment_ids=[theirs]),
        send_(me=me_a, chat_id=chat, content="retry of k", client_id="k", attachment_ids=[kept]),
        send_(me=me_a, chat_id=chat, content="ghost", attachment_ids=["0" * 32]),
        send_(me=me_a, chat_id=other, content="", attachment_ids=[mine_too]),
    )
    done = Batches.now() - before
    assert (done.count, done.sends, done.fallbacks) == (1, 10, 0)

    assert [error_of(outcomes[i]) for i in (1, 2, 4, 8)] == [REFUSED_ATTACHMENTS] * 4
    files, plain, retry, bs_own, retry_k, last = (sent(outcomes[i]) for i in (0, 3, 5, 6, 7, 9))
    assert [new for _, new in (files, plain, retry, bs_own, retry_k, last)] == [
        True,
        True,
        False,
        True,
        False,
        True,
    ]
    assert retry[0] == files[0]
    assert json_of(retry_k[0]) == stored
    # In the order history lists them (upload time), whatever the order asked for.
    assert [f.id for f in files[0].attachments] == [one, two]
    assert [f.id for f in bs_own[0].attachments] == [theirs]
    assert [f.id for f in last[0].attachments] == [mine_too]
    assert await attached_to(app, [kept, one, two, theirs, mine_too]) == [
        stored["id"],
        files[0].id,
        files[0].id,
        bs_own[0].id,
        last[0].id,
    ]

    # The log and history hold exactly the stored sends, as they were answered.
    log = await events(app.client, b, chat)
    assert [e["message"] for e in log] == [stored, json_of(files[0]), json_of(bs_own[0])]
    assert [e["seq"] for e in log] == [1, 2, 3]
    r = await app.client.get(f"/api/messages/{chat}", headers=b["headers"])
    assert r.json()["items"] == [stored, json_of(files[0]), json_of(bs_own[0])]
    assert [e["message"] for e in await events(app.client, a, other)] == [
        json_of(plain[0]),
        json_of(last[0]),
    ]

    # Over HTTP, with and without a batch around it: the same answers.
    r = await app.client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "again", "attachment_ids": [one]},
        headers=a["headers"],
    )
    assert (r.status_code, r.json()["detail"]) == (422, REFUSED_ATTACHMENTS[2])
    r = await app.client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "retry", "client_id": "c", "attachment_ids": [one]},
        headers=a["headers"],
    )
    assert (r.status_code, r.json()) == (200, json_of(files[0]))


async def test_a_send_racing_another_writer_of_its_client_id_answers_with_the_original(
    app: App, db: Database
) -> None:
    """The client-id key is checked under the chat lock, so only a writer that stores the key
    without that lock can race a send to it; the unique index catches what the check missed,
    and the send answers with the message that won, as a retry would be answered."""
    a, b = await register(app.client), await register(app.client)
    me_a = await app.user(a)
    chat = await group(app.client, a, b)
    other = await group(app.client, a, b)

    def row(client_id: str, seq: int) -> dict[str, Any]:
        return {
            "id": ids.new_id(),
            "chat_id": chat,
            "seq": seq,
            "sender_id": me_a.id,
            "content": f"stored elsewhere as {client_id}",
            "client_id": client_id,
            "reply_to_id": None,
            "created_at": utcnow(),
            "edited_at": None,
            "deleted": False,
        }

    if db.is_sqlite:
        # SQLite has one writer and the check runs under its lock: a key stored by another
        # connection is always committed before the check and found by it.
        theirs = row("r-1", 1000)
        async with db.transaction() as tx:
            await message_store.insert_messages(tx.conn, [theirs])
        before = Batches.now()
        view, new = sent(
            await app.messages.send(me=me_a, chat_id=chat, content="x", client_id="r-1")
        )
        assert (view.id, view.content, new) == (theirs["id"], theirs["content"], False)
        assert Batches.now() - before == Batches(1, 1, 0)
        assert await events(app.client, a, chat) == []
        return

    async def racing(theirs: dict[str, Any], *sends: Awaitable[Sent]) -> list[object]:
        """The sends, while another transaction holds `theirs` uncommitted: its insert does
        not lock the chat, so the batch's check misses the key and its insert waits on it."""
        async with db.engine.connect() as conn:
            tx = await conn.begin()
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await message_store.insert_messages(conn, [theirs])
            started = asyncio.ensure_future(together(*sends))
            await until(lambda: blocked_by(db, pid), 1)
            await tx.commit()
        return await started

    send_ = app.messages.send
    # A batch of one: the unique violation is its own, answered with the original.
    theirs = row("r-1", 1000)
    before = Batches.now()
    [alone] = await racing(theirs, send_(me=me_a, chat_id=chat, content="x", client_id="r-1"))
    assert Batches.now() - before == Batches(1, 1, 0)
    view, new = sent(alone)
    assert (view.id, view.content, view.seq, new) == (theirs["id"], theirs["content"], 1000, False)

    # A batch of two fails as a whole; each send is retried alone and answered for itself.
    theirs = row("r-2", 1001)
    before = Batches.now()
    outcomes = await racing(
        theirs,
        send_(me=me_a, chat_id=chat, content="y", client_id="r-2"),
        send_(me=me_a, chat_id=other, content="unrelated", client_id="r-2"),
    )
    assert Batches.now() - before == Batches(1, 2, 1)
    (view, new), (unrelated, fresh) = sent(outcomes[0]), sent(outcomes[1])
    assert (view.id, new) == (theirs["id"], False)
    assert (unrelated.chat_id, unrelated.seq, unrelated.content, fresh) == (
        other,
        1,
        "unrelated",
        True,
    )

    # The chat's own sequence never moved: nothing of the losing sends was stored.
    assert await events(app.client, a, chat) == []
    later = await send(app.client, a, chat, "later")
    assert later["seq"] == 1


async def blocked_by(db: Database, pid: int) -> int:
    """How many PostgreSQL backends wait for a lock that backend `pid` holds."""
    async with db.read() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        )
        return int(found.scalar_one())


async def until(measure: Callable[[], Awaitable[int]], expected: int) -> None:
    """Wait until `measure` gives `expected` (polled: the condition lives in the database)."""
    async with asyncio.timeout(WAIT_S):
        while await measure() != expected:
            await asyncio.sleep(0.01)
