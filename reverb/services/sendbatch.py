"""Message sends in batches: every send waiting at one moment is stored by one transaction.

Each send of a batch gets exactly the answer it would get alone: the checks run in the same
order, with one query each for the whole batch. A batch whose transaction fails as a whole is
retried one send at a time, so one bad send never fails the others.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from reverb import ids
from reverb.domain.events import MessageCreated
from reverb.domain.users import User
from reverb.domain.wire import MessageView
from reverb.errors import ReverbError, invalid
from reverb.metrics import MESSAGES_STORED, SEND_BATCH_FALLBACKS, SEND_BATCH_SIZE
from reverb.services import views
from reverb.services.chats import chat_not_found
from reverb.services.eventlog import EventLog
from reverb.services.groupcommit import GroupCommitter, Pending
from reverb.storage import chats as chat_store
from reverb.storage import messages as message_store
from reverb.storage.db import Database, Tx
from reverb.storage.messages import ClientKey, MessageRow
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

# Bounds one transaction's statements and locks; a busier moment just makes more batches.
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A send whose content is already clean."""

    me: User
    chat_id: str
    content: str
    client_id: str | None = None
    reply_to_id: str | None = None
    attachments: tuple[str, ...] = ()  # only ever sent alone, never in a batch

    @property
    def key(self) -> ClientKey | None:
        return None if self.client_id is None else (self.chat_id, self.me.id, self.client_id)


# (the message, whether this send stored it)
Sent = tuple[MessageView, bool]
Answer = Sent | ReverbError


def reply_not_in_chat() -> ReverbError:
    return invalid("reply_to_id is not a message of this chat", field="reply_to_id")


class CommitFailed(Exception):
    """The COMMIT itself failed: the batch may have been stored, so retrying could store it
    twice. Its sends fail with the cause, as a lone send whose commit failed does; those
    refused before anything was stored keep their refusal."""

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__("commit failed")
        self.answers = answers


class SendBatcher:
    def __init__(
        self,
        db: Database,
        event_log: EventLog,
        send_alone: Callable[[SendRequest], Awaitable[Sent]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._db = db
        self._log = event_log
        self._send_alone = send_alone
        self._committer = GroupCommitter(self._run, max_batch=max_batch, name="send batches")

    @property
    def queued(self) -> int:
        return self._committer.queued

    async def send(self, request: SendRequest) -> Sent:
        return await self._committer.submit(request)

    async def close(self) -> None:
        await self._committer.close()

    async def _run(self, batch: list[Pending[SendRequest, Sent]]) -> None:
        SEND_BATCH_SIZE.observe(len(batch))
        answers: list[Answer] | None = None
        try:
            answers = await self._commit([p.request for p in batch])
        except CommitFailed as failed:
            cause = failed.__cause__ or failed
            for pending, answer in zip(batch, failed.answers, strict=True):
                pending.fail(answer if isinstance(answer, ReverbError) else cause)
            return
        except Exception:
            # A unique key hit by another process, a deadlock, a row the database refuses:
            # nothing was stored, and one send at a time gives each send its own outcome.
            SEND_BATCH_FALLBACKS.inc()
            log.warning("send batch of %d failed; sending one at a time", len(batch), exc_info=True)
        if answers is None:
            for pending in batch:
                if pending.waiting:  # a caller gone meanwhile: as if its request was cancelled
                    try:
                        pending.settle(await self._send_alone(pending.request))
                    except Exception as exc:
                        pending.fail(exc)
            return
        for pending, answer in zip(batch, answers, strict=True):
            if isinstance(answer, ReverbError):
                pending.fail(answer)
            else:
                pending.settle(answer)

    async def _commit(self, requests: list[SendRequest]) -> list[Answer]:
        answers: list[Answer] | None = None
        try:
            async with self._db.transaction() as tx:
                answers = await _store(tx, self._log, requests)
        except Exception as exc:
            if answers is not None:
                raise CommitFailed(answers) from exc
            raise
        MESSAGES_STORED.inc(sum(1 for a in answers if not isinstance(a, ReverbError) and a[1]))
        return answers


async def _store(tx: Tx, event_log: EventLog, requests: Sequence[SendRequest]) -> list[Answer]:
    conn = tx.conn
    # The chat locks come first: with them held, an earlier send of the same client id is
    # either committed (and found below) or not yet begun.
    found = await chat_store.lock_many(conn, sorted({r.chat_id for r in requests}))
    members = await chat_store.member_pairs(
        conn, [(r.chat_id, r.me.id) for r in requests if r.chat_id in found]
    )
    keys = [r.key for r in requests if (r.chat_id, r.me.id) in members]
    originals = await _originals(
        conn, await message_store.by_client_ids(conn, [k for k in keys if k is not None])
    )
    targets = await message_store.get_many(
        conn, [r.reply_to_id for r in requests if r.reply_to_id and ids.is_id(r.reply_to_id)]
    )

    answers: list[Answer | None] = [None] * len(requests)
    fresh: list[int] = []  # the sends that store a message, in arrival order
    first: dict[ClientKey, int] = {}  # which of them took a client id
    repeats: list[tuple[int, int]] = []  # (a send, the earlier send of this batch it repeats)
    for i, r in enumerate(requests):
        key = r.key
        if (r.chat_id, r.me.id) not in members:
            answers[i] = chat_not_found()
        elif key is not None and key in originals:
            answers[i] = (originals[key], False)
        elif key is not None and key in first:
            repeats.append((i, first[key]))
        elif r.reply_to_id is not None and (
            (target := targets.get(r.reply_to_id)) is None or target.chat_id != r.chat_id
        ):
            answers[i] = reply_not_in_chat()
        else:
            fresh.append(i)
            if key is not None:
                first[key] = i

    stored = await _insert(tx, event_log, [requests[i] for i in fresh])
    for i, view in zip(fresh, stored, strict=True):
        answers[i] = (view, True)
    for i, j in repeats:
        original = answers[j]
        assert isinstance(original, tuple)
        answers[i] = (original[0], False)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


async def _originals(
    conn: AsyncConnection, stored: dict[ClientKey, MessageRow]
) -> dict[ClientKey, MessageView]:
    """Each stored message as its own sender sees it (`reactions[].me` depends on the viewer)."""
    by_sender: dict[str, list[ClientKey]] = defaultdict(list)
    for key in stored:
        by_sender[key[1]].append(key)
    out: dict[ClientKey, MessageView] = {}
    for sender_id, keys in by_sender.items():
        found = await views.message_views(conn, [stored[k] for k in keys], sender_id)
        out.update(zip(keys, found, strict=True))
    return out


async def _insert(tx: Tx, event_log: EventLog, sends: Sequence[SendRequest]) -> list[MessageView]:
    """Store new messages and their events; seqs follow arrival order within each chat."""
    if not sends:
        return []
    now = utcnow()
    message_ids = [ids.new_id() for _ in sends]
    per_chat: dict[str, list[int]] = defaultdict(list)
    for n, r in enumerate(sends):
        per_chat[r.chat_id].append(n)
    seqs = [0] * len(sends)
    for chat_id in sorted(per_chat):
        group = per_chat[chat_id]
        last = await chat_store.take_seqs(
            tx.conn, chat_id, len(group), last_message_id=message_ids[group[-1]], now=now
        )
        for seq, n in enumerate(group, start=last - len(group) + 1):
            seqs[n] = seq
    rows = [
        MessageRow(
            id=message_id,
            chat_id=r.chat_id,
            seq=seq,
            sender_id=r.me.id,
            content=r.content,
            client_id=r.client_id,
            reply_to_id=r.reply_to_id,
            created_at=now,
            edited_at=None,
            deleted=False,
        )
        for r, message_id, seq in zip(sends, message_ids, seqs, strict=True)
    ]
    await message_store.insert_messages(tx.conn, [message_store.values_of(row) for row in rows])
    created = [views.message_view(row, r.me) for row, r in zip(rows, sends, strict=True)]
    await event_log.record_many(
        tx, [MessageCreated(chat_id=v.chat_id, seq=v.seq, message=v) for v in created], now=now
    )
    return created
