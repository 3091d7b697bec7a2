"""Prometheus metrics. Defined once here so every layer counts into the same registry.

With several worker processes (`reverb serve --workers N`) prometheus_client's multiprocess mode
keeps each process's values in files under PROMETHEUS_MULTIPROC_DIR, which `reverb serve` makes
for the run; a scrape, whichever worker answers it, adds up the files of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# prometheus_client reads the same variable once, when it is first imported.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
CONTENT_TYPE = CONTENT_TYPE_LATEST
# How often each worker copies its tallies into the shared files: a scrape may show another
# worker's tallies this much late, far less than any scrape interval.
TALLY_FLUSH_S = 1.0

HTTP_REQUESTS = Counter(
    "reverb_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "reverb_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LOGINS = Counter(
    "reverb_logins_total",
    "Login attempts by outcome.",
    ["outcome"],
)
BUS_ERRORS = Counter(
    "reverb_bus_errors_total",
    "Bus publish or subscription failures (the event log repairs what they lose).",
    ["operation"],
)
OUTBOX_DROPPED = Counter(
    "reverb_outbox_dropped_total",
    "Live-only envelopes the relay dropped (outbox closed or too many held while the bus was "
    "away). Logged events are never dropped: their chats are repaired from the log.",
)
# Summed over the workers that are alive: a worker that has exited holds no connections, though
# its file may still say so when it did not end cleanly.
WS_CONNECTIONS = Gauge(
    "reverb_ws_connections",
    "Open, authenticated WebSocket connections.",
    multiprocess_mode="livesum",
)
WS_CLOSES = Counter(
    "reverb_ws_closes_total", "WebSocket connections closed by the server, by close code.", ["code"]
)


class Tally:
    """A counter for the hottest path (one count per event per connection): a plain integer
    added to, copied into a standard Counter by `flush` (before each scrape, and every
    TALLY_FLUSH_S with several workers). prometheus_client's Counter takes a lock per increment
    (with several workers it also writes a shared file), which cost about a twentieth of a
    fan-out."""

    def __init__(self, name: str, documentation: str) -> None:
        self.value = 0
        self._flushed = 0
        self._counter = Counter(name, documentation)
        _TALLIES.append(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def flush(self) -> None:
        if self.value != self._flushed:
            self._counter.inc(self.value - self._flushed)
            self._flushed = self.value


_TALLIES: list[Tally] = []


EVENTS_DELIVERED = Tally("reverb_events_delivered", "Events written to WebSocket connections.")
ACCESS_USER_READS = Tally(
    "reverb_access_user_reads",
    "Access-token checks that read the user's row (the rest are served from the process's cache).",
)
MESSAGES_STORED = Counter("reverb_messages_stored_total", "Messages stored (REST and WebSocket).")
SEND_BATCH_SIZE = Histogram(
    "reverb_send_batch_size",
    "Sends taken together into one transaction (group commit), per batch the send queue forms "
    "(a send whose chat was held elsewhere is counted again in the batch that waits for it).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
SEND_BATCH_FALLBACKS = Counter(
    "reverb_send_batch_fallbacks_total",
    "Send batches whose transaction failed as a whole and were retried one send at a time.",
)
MARKER_BATCH_SIZE = Histogram(
    "reverb_marker_batch_size",
    "Members' read/delivered markers written together in one transaction, per batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
GAP_FILLS = Counter(
    "reverb_gap_fills_total", "Times missing events were re-read from the event log.", ["where"]
)
MAILS = Counter(
    "reverb_mails_total",
    "Mails by outcome: sent, logged (SMTP_URL unset), failed (after every retry), dropped "
    "(queue full).",
    ["outcome"],
)


def flush() -> None:
    for tally in _TALLIES:
        tally.flush()


def exposition() -> bytes:
    """The Prometheus text of this process, or of all the workers."""
    flush()
    if MULTIPROCESS_DIR is None:
        return generate_latest(REGISTRY)
    _forget_dead(Path(MULTIPROCESS_DIR))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def _forget_dead(folder: Path) -> None:
    """Drop the live gauges of workers that ended without `ended` (killed, crashed), which
    uvicorn's supervisor replaced: their connections are gone. A PID the system has given to
    another process since would keep its last values, until that process ends too."""
    for path in folder.glob("gauge_live*.db"):
        found = _LIVE_FILE.fullmatch(path.name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or now another user's PID
            _dead(pid)


async def keep_flushing() -> None:
    """With several workers, copy this one's tallies into the shared files now and then (a
    scrape answered by another worker cannot ask this one to)."""
    if MULTIPROCESS_DIR is None:
        return
    while True:
        await asyncio.sleep(TALLY_FLUSH_S)
        flush()


def ended() -> None:
    """This worker stops: its tallies counted, its live gauges dropped."""
    flush()
    if MULTIPROCESS_DIR is not None:
        _dead(os.getpid())


def _dead(pid: int) -> None:
    # Another worker's scrape may be removing the same files.
    with contextlib.suppress(FileNotFoundError):
        mark_process_dead(pid, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
