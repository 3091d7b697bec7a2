"""Prometheus metrics. Defined once here so every layer counts into the same registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

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
WS_CONNECTIONS = Gauge("reverb_ws_connections", "Open, authenticated WebSocket connections.")
WS_CLOSES = Counter(
    "reverb_ws_closes_total", "WebSocket connections closed by the server, by close code.", ["code"]
)


class Tally:
    """A counter for the hottest path (one count per event per connection): a plain integer,
    read when scraped. prometheus_client's Counter takes a lock per increment, which cost
    about a twentieth of a fan-out."""

    def __init__(self, name: str, documentation: str) -> None:
        self.value = 0
        self._name = name
        self._documentation = documentation
        REGISTRY.register(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.value)


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
