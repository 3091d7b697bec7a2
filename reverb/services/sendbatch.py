"""Message sends, stored in batches: the one path of every send (REST or WebSocket, with or
without attachments); a send alone is a batch of one.

Sends queue per chat (`groupcommit`); a batch stores every send waiting at one moment in one
transaction. Each send of a batch gets exactly the answer it would get alone: the checks run
in the same order, with one query each for the whole batch. A batch whose transaction fails as
a whole is retried one send at a time (batches of one, through the same code), so one bad send
never fails the others.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from msgspec import Raw
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb import ids
from reverb.domain.events import MessageCreated
from reverb.domain.users import User
from reverb.domain.wire import EncodedMessage
from reverb.errors import ReverbError, invalid
from reverb.metrics import MESSAGES_STORED, SEND_BATCH_FALLBACKS, SEND_BATCH_SIZE
from reverb.services import views
from reverb.services.chats import chat_not_found, membership
from reverb.services.eventlog import EventLog
from reverb.services.groupcommit import GroupCommitter, Pending
from reverb.storage import chats as chat_store
from reverb.storage import media as media_store
from reverb.storage import messages as message_store
from reverb.storage.db import Database, Tx
from reverb.storage.media import MediaRow
from reverb.storage.messages import ClientKey, MessageRow
from reverb.storage.outage import DatabaseUnavailable
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
    attachments: tuple[str, ...] = ()  # upload ids, without repeats

    @property
    def key(self) -> ClientKey | None:
        return None if self.client_id is None else (self.chat_id, self.me.id, self.client_id)


# (the message with its JSON, whether this send stored it)
Sent = tuple[EncodedMessage, bool]
Answer = Sent | ReverbError
# None: the send's chat was held by another transaction, so this batch left it alone.
Outcome = Answer | None
Batch = list[Pending[SendRequest, Sent]]


def reply_not_in_chat() -> ReverbError:
    return invalid("reply_to_id is not a message of this chat", field="reply_to_id")


def attachments_refused() -> ReverbError:
    return invalid(
        "each attachment must be your own upload, not yet attached", field="attachment_ids"
    )


class CommitFailed(Exception):
    """The COMMIT itself failed: the batch may have been stored, so retrying could store it
    twice. Its sends fail with the cause, as a lone send whose commit failed does; those
    refused before anything was stored keep their refusal."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("commit failed")
        self.outcomes = outcomes


class ClaimLost(Exception):
    """An upload found unattached was attached by another transaction before this one could
    attach it. Which send lost it is known only in a batch of one: a larger batch is retried
    one send at a time, each finding out for itself."""


def send_concurrency(db: Database, pool_size: int) -> int:
    """How many send batches (of different chats) may be in flight at once.

    SQLite has one writer: a second batch would only wait for the write lock. On PostgreSQL
    each batch in flight holds a pooled connection for its whole transaction; the pool has
    `pool_size` connections and as many again in overflow (`storage.db`), so sends may take at
    most `pool_size` of them and reads, edits and markers always find one without queueing
    behind a burst of sends. More transactions than that would only wait inside PostgreSQL
    for the same WAL flushes."""
    return 1 if db.is_sqlite else pool_size


class SendBatcher:
    def __init__(
        self, db: Database, event_log: EventLog, *, pool_size: int, max_batch: int = MAX_BATCH
    ) -> None:
        self._db = db
        self._log = event_log
        self._committer: GroupCommitter[SendRequest, Sent] = GroupCommitter(
            self._run,
            key=_chat_of,
            max_batch=max_batch,
            concurrency=send_concurrency(db, pool_size),
            name="send batches",
        )

    @property
    def queued(self) -> int:
        """Sends handed in and not yet taken into a batch."""
        return self._committer.queued

    @property
    def in_flight(self) -> int:
        return self._committer.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self._committer.peak_in_flight

    async def send(self, request: SendRequest) -> Sent:
        return await self._committer.submit(request)

    async def close(self) -> None:
        await self._committer.close()

    async def _run(self, batch: Batch, wait: bool) -> Batch:
        """Answer each send of the batch; the sends whose chat was held elsewhere are returned
        to be run again (in a batch that waits for the chat)."""
        SEND_BATCH_SIZE.observe(len(batch))
        if len(batch) == 1:
            return await self._alone(batch[0], wait)
        try:
            outcomes = await self._commit([p.request for p in batch], wait)
        except CommitFailed as failed:
            return _fail(batch, failed)
        except DatabaseUnavailable as down:
            # Nothing was stored, and one send at a time would only fail the same way.
            for pending in batch:
                pending.fail(down)
            return []
        except Exception:
            # A unique key hit by another process, a deadlock, a row the database refuses:
            # nothing was stored, and one send at a time gives each send its own outcome.
            SEND_BATCH_FALLBACKS.inc()
            log.warning("send batch of %d failed; sending one at a time", len(batch), exc_info=True)
            handed_back: Batch = []
            for pending in batch:
                if pending.waiting:  # a caller gone meanwhile: as if its request was cancelled
                    handed_back += await self._alone(pending, wait)
            return handed_back
        return _settle(batch, outcomes)

    async def _alone(self, pending: Pending[SendRequest, Sent], wait: bool) -> Batch:
        """A batch of one, whose failure is its own: not retried again."""
        request = pending.request
        try:
            outcomes = await self._commit([request], wait)
        except CommitFailed as failed:
            return _fail([pending], failed)
        except ClaimLost:
            pending.fail(attachments_refused())
            return []
        except IntegrityError as exc:
            # A concurrent send of the same client id committed first: answer with it.
            try:
                original = await self._original(request)
            except Exception as lookup:
                pending.fail(lookup)
            else:
                if original is None:
                    pending.fail(exc)
                else:
                    pending.settle(original)
            return []
        except Exception as exc:
            pending.fail(exc)
            return []
        return _settle([pending], outcomes)

    async def _commit(self, requests: list[SendRequest], wait: bool) -> list[Outcome]:
        outcomes: list[Outcome] | None = None
        try:
            async with self._db.transaction() as tx:
                outcomes = await _store(tx, self._log, requests, wait=wait)
        except Exception as exc:
            if outcomes is not None:
                raise CommitFailed(outcomes) from exc
            raise
        MESSAGES_STORED.inc(sum(1 for o in outcomes if isinstance(o, tuple) and o[1]))
        return outcomes

    async def _original(self, request: SendRequest) -> Sent | None:
        """The stored message of this send's client id, as its sender sees it."""
        if request.client_id is None:
            return None
        me = request.me
        async with self._db.read() as conn:
            await membership(conn, request.chat_id, me.id)
            row = await message_store.by_client_id(conn, request.chat_id, me.id, request.client_id)
            if row is None:
                return None
            return EncodedMessage.of((await views.message_views(conn, [row], me.id))[0]), False


def _chat_of(request: SendRequest) -> str:
    return request.chat_id


def _settle(batch: Batch, outcomes: list[Outcome]) -> Batch:
    handed_back: Batch = []
    for pending, outcome in zip(batch, outcomes, strict=True):
        if outcome is None:
            handed_back.append(pending)
        elif isinstance(outcome, ReverbError):
            pending.fail(outcome)
        else:
            pending.settle(outcome)
    return handed_back


def _fail(batch: Batch, failed: CommitFailed) -> Batch:
    """Answers for a batch whose commit failed. Sends it left alone were never part of it."""
    cause = failed.__cause__ or failed
    handed_back: Batch = []
    for pending, outcome in zip(batch, failed.outcomes, strict=True):
        if outcome is None:
            handed_back.append(pending)
        else:
            pending.fail(outcome if isinstance(outcome, ReverbError) else cause)
    return handed_back


async def _store(
    tx: Tx, event_log: EventLog, requests: Sequence[SendRequest], *, wait: bool
) -> list[Outcome]:
    conn = tx.conn
    # The chat locks come first: with them held, an earlier send of the same client id is
    # either committed (and found below) or not yet begun. Unless told to wait, a chat whose
    # row another transaction holds is skipped, so that it cannot hold up the others.
    chat_ids = sorted({r.chat_id for r in requests})
    locked = await chat_store.lock_many(conn, chat_ids, wait=wait)
    held: set[str] = set()
    if len(locked) < len(chat_ids) and not wait:
        held = await chat_store.existing(conn, [c for c in chat_ids if c not in locked])
    members = await chat_store.member_pairs(
        conn, [(r.chat_id, r.me.id) for r in requests if r.chat_id in locked]
    )
    allowed = [r for r in requests if (r.chat_id, r.me.id) in members]
    originals = await _originals(
        conn,
        await message_store.by_client_ids(conn, [r.key for r in allowed if r.key is not None]),
    )
    targets = await message_store.get_many(
        conn, [r.reply_to_id for r in allowed if r.reply_to_id and ids.is_id(r.reply_to_id)]
    )
    uploads = await media_store.get_many(conn, [a for r in allowed for a in r.attachments])

    outcomes: list[Outcome] = [None] * len(requests)
    fresh: list[int] = []  # the sends that store a message, in arrival order
    first: dict[ClientKey, int] = {}  # which of them took a client id
    repeats: list[tuple[int, int]] = []  # (a send, the earlier send of this batch it repeats)
    claimed: set[str] = set()  # uploads the fresh sends attach
    for i, r in enumerate(requests):
        key = r.key
        if r.chat_id in held:
            continue  # left for a batch that waits for the chat
        if (r.chat_id, r.me.id) not in members:
            outcomes[i] = chat_not_found()
        elif key is not None and key in originals:
            outcomes[i] = (originals[key], False)
        elif key is not None and key in first:
            repeats.append((i, first[key]))
        elif r.reply_to_id is not None and (
            (target := targets.get(r.reply_to_id)) is None or target.chat_id != r.chat_id
        ):
            outcomes[i] = reply_not_in_chat()
        elif not _claimable(r, uploads, claimed):
            outcomes[i] = attachments_refused()
        else:
            fresh.append(i)
            claimed.update(r.attachments)
            if key is not None:
                first[key] = i

    stored = await _insert(tx, event_log, [requests[i] for i in fresh], uploads)
    for i, view in zip(fresh, stored, strict=True):
        outcomes[i] = (view, True)
    for i, j in repeats:
        original = outcomes[j]
        assert isinstance(original, tuple)
        outcomes[i] = (original[0], False)
    return outcomes


def _claimable(request: SendRequest, uploads: dict[str, MediaRow], claimed: set[str]) -> bool:
    """Each attachment is the sender's own upload, attached to no message (nor to an earlier
    send of this batch)."""
    for media_id in request.attachments:
        upload = uploads.get(media_id)
        if (
            upload is None
            or upload.uploader_id != request.me.id
            or upload.message_id is not None
            or media_id in claimed
        ):
            return False
    return True


async def _originals(
    conn: AsyncConnection, stored: dict[ClientKey, MessageRow]
) -> dict[ClientKey, EncodedMessage]:
    """Each stored message as its own sender sees it (`reactions[].me` depends on the viewer)."""
    by_sender: dict[str, list[ClientKey]] = defaultdict(list)
    for key in stored:
        by_sender[key[1]].append(key)
    out: dict[ClientKey, EncodedMessage] = {}
    for sender_id, keys in by_sender.items():
        found = await views.message_views(conn, [stored[k] for k in keys], sender_id)
        out.update(zip(keys, map(EncodedMessage.of, found), strict=True))
    return out


async def _insert(
    tx: Tx, event_log: EventLog, sends: Sequence[SendRequest], uploads: dict[str, MediaRow]
) -> list[EncodedMessage]:
    """Store new messages, their attachments and their events; seqs follow arrival order
    within each chat, and each chat's row is updated once."""
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
    claims = {
        media_id: message_id
        for r, message_id in zip(sends, message_ids, strict=True)
        for media_id in r.attachments
    }
    if claims and await media_store.attach_many(tx.conn, claims) != len(claims):
        raise ClaimLost
    created = [
        EncodedMessage.of(views.message_view(row, r.me, attachments=_files(r, uploads)))
        for row, r in zip(rows, sends, strict=True)
    ]
    await event_log.record_many(
        tx,
        [
            MessageCreated(chat_id=m.view.chat_id, seq=m.view.seq, message=Raw(m.json))
            for m in created
        ],
        now=now,
    )
    return created


def _files(request: SendRequest, uploads: dict[str, MediaRow]) -> list[MediaRow]:
    """The send's attachments in the order history lists them (`media.for_messages`)."""
    return sorted((uploads[m] for m in request.attachments), key=lambda u: (u.created_at, u.id))
