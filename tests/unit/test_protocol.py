"""The WebSocket protocol without I/O: frame parsing, connection states, the send rate limit."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from reverb.realtime.protocol import (
    MAX_SINCE,
    AuthFrame,
    BadFrame,
    ClientFrame,
    ConnectionState,
    DeliveredFrame,
    FloodGuard,
    IllegalTransition,
    PingFrame,
    ReadFrame,
    SendFrame,
    State,
    TokenBucket,
    TypingFrame,
    parse,
)

SEQ_MAX = 2**31 - 1
# Ids as the server makes them (32 hex digits): anything else is a bad frame.
C1, C2, C3, M1 = "c1" * 16, "c2" * 16, "c3" * 16, "e1" * 16


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def bad(text: str) -> BadFrame:
    result = parse(text)
    assert isinstance(result, BadFrame), result
    assert result.code == "invalid_frame"
    assert result.detail
    return result


# --- valid frames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"type": "auth", "token": "tok"},
            AuthFrame(token="tok", since={}),
        ),
        (
            {"type": "auth", "token": "tok", "since": {C1: 0, C2: 17, C3: SEQ_MAX}},
            AuthFrame(token="tok", since={C1: 0, C2: 17, C3: SEQ_MAX}),
        ),
        (
            {"type": "message.send", "chat_id": C1, "content": "héllo 👋", "client_id": "k1"},
            SendFrame(chat_id=C1, content="héllo 👋", client_id="k1"),
        ),
        (
            {
                "type": "message.send",
                "chat_id": C1,
                "content": "",
                "client_id": "k1",
                "reply_to_id": M1,
            },
            SendFrame(chat_id=C1, content="", client_id="k1", reply_to_id=M1),
        ),
        (
            {
                "type": "message.send",
                "chat_id": C1,
                "content": "x",
                "client_id": "k1",
                "reply_to_id": None,
            },
            SendFrame(chat_id=C1, content="x", client_id="k1"),
        ),
        ({"type": "typing", "chat_id": C1}, TypingFrame(chat_id=C1)),
        ({"type": "read", "chat_id": C1, "seq": 0}, ReadFrame(chat_id=C1, seq=0)),
        (
            {"type": "read", "chat_id": C1, "seq": SEQ_MAX},
            ReadFrame(chat_id=C1, seq=SEQ_MAX),
        ),
        (
            {"type": "delivered", "chat_id": C1, "seq": 5},
            DeliveredFrame(chat_id=C1, seq=5),
        ),
        ({"type": "ping"}, PingFrame()),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_every_frame_type_parses_to_its_model(
    fields: dict[str, Any], expected: ClientFrame
) -> None:
    result = parse(frame(**fields))
    assert type(result) is type(expected)
    assert result == expected
    assert result.ref is None


@pytest.mark.parametrize("ref", ["r-1", "", "x" * 128, 0, 7, -3, 2**63 - 1, -(2**63)])
@pytest.mark.parametrize(
    "fields",
    [
        {"type": "ping"},
        {"type": "typing", "chat_id": C1},
        {"type": "read", "chat_id": C1, "seq": 1},
        {"type": "delivered", "chat_id": C1, "seq": 1},
        {"type": "auth", "token": "t"},
        {"type": "message.send", "chat_id": C1, "content": "x", "client_id": "k"},
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_ref_is_kept_when_str_or_int(fields: dict[str, Any], ref: str | int) -> None:
    result = parse(frame(**fields, ref=ref))
    assert not isinstance(result, BadFrame), result
    assert result.ref == ref
    assert type(result.ref) is type(ref)


def test_unknown_fields_are_ignored() -> None:
    result = parse(frame(type="ping", future={"nested": [1, 2, {"deep": True}]}, x=None))
    assert result == PingFrame()


def test_parsed_frames_are_immutable() -> None:
    result = parse(frame(type="read", chat_id=C1, seq=3))
    assert isinstance(result, ReadFrame)
    with pytest.raises(AttributeError, match="immutable"):
        result.seq = 4  # type: ignore[misc]


# --- invalid JSON and non-objects ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "{",
        "{'type': 'ping'}",
        '{"type": "ping",}',
        '{"type": "ping"} trailing',
        "NaN",
        "1e999",
        "\ud800",
        "ping",
        '{"type": "ping"}\x00',
    ],
)
def test_invalid_json_is_a_bad_frame(text: str) -> None:
    result = bad(text)
    assert result.ref is None
    assert "JSON" in result.detail


@pytest.mark.parametrize("text", ["[]", "1", '"x"', "null", "true", "[{}]", '[{"type":"ping"}]'])
def test_json_that_is_not_an_object_is_a_bad_frame(text: str) -> None:
    assert bad(text).ref is None


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,
        "[" * 50000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
    ids=["balanced-5000", "open-50000", "objects-5000", "inside-a-ping"],
)
def test_deeply_nested_json_is_a_bad_frame_quickly(text: str) -> None:
    started = time.perf_counter()
    result = parse(text)
    elapsed = time.perf_counter() - started
    assert isinstance(result, BadFrame)
    assert elapsed < 0.5, elapsed


# --- unknown types, missing fields, wrong types -------------------------------------------------


@pytest.mark.parametrize("kind", ["nope", "", "PING", "message", "ack", 5, None, ["ping"]])
def test_unknown_type_is_a_bad_frame(kind: object) -> None:
    assert bad(frame(type=kind)).ref is None


@pytest.mark.parametrize("ref", ["r1", 42])
def test_unknown_type_keeps_the_ref(ref: str | int) -> None:
    assert bad(frame(type="nope", ref=ref)).ref == ref


def test_missing_type_keeps_the_ref() -> None:
    assert bad(frame(ref="r9", chat_id=C1)).ref == "r9"


@pytest.mark.parametrize("ref", [1.5, None, [1], {"a": 1}, True, False, 2**63, "x\x00", "x" * 129])
def test_a_ref_that_is_not_str_or_int_is_not_echoed(ref: object) -> None:
    assert bad(frame(type="nope", ref=ref)).ref is None


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"type": "auth"}, "token"),
        ({"type": "message.send", "content": "x", "client_id": "k"}, "chat_id"),
        ({"type": "message.send", "chat_id": C1, "client_id": "k"}, "content"),
        ({"type": "message.send", "chat_id": C1, "content": "x"}, "client_id"),
        ({"type": "typing"}, "chat_id"),
        ({"type": "read", "chat_id": C1}, "seq"),
        ({"type": "read", "seq": 1}, "chat_id"),
        ({"type": "delivered", "chat_id": C1}, "seq"),
        ({"type": "delivered", "seq": 1}, "chat_id"),
    ],
)
def test_missing_fields_are_bad_frames_naming_the_field(
    fields: dict[str, Any], missing: str
) -> None:
    result = bad(frame(**fields, ref="r"))
    assert missing in result.detail
    assert result.ref == "r"


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "auth", "token": 5},
        {"type": "auth", "token": ""},
        {"type": "auth", "token": "t" * 4097},
        {"type": "auth", "token": None},
        {"type": "message.send", "chat_id": 5, "content": "x", "client_id": "k"},
        {"type": "message.send", "chat_id": "", "content": "x", "client_id": "k"},
        {"type": "message.send", "chat_id": "c" * 65, "content": "x", "client_id": "k"},
        {"type": "message.send", "chat_id": C1, "content": 5, "client_id": "k"},
        {"type": "message.send", "chat_id": C1, "content": None, "client_id": "k"},
        {"type": "message.send", "chat_id": C1, "content": ["x"], "client_id": "k"},
        {"type": "message.send", "chat_id": C1, "content": "x", "client_id": ""},
        {"type": "message.send", "chat_id": C1, "content": "x", "client_id": "k" * 129},
        {"type": "message.send", "chat_id": C1, "content": "x", "client_id": 1},
        {
            "type": "message.send",
            "chat_id": C1,
            "content": "x",
            "client_id": "k",
            "reply_to_id": 1,
        },
        {"type": "typing", "chat_id": {"id": "c"}},
        {"type": "typing", "chat_id": None},
        {"type": "read", "chat_id": C1, "seq": "x"},
        {"type": "read", "chat_id": C1, "seq": None},
        {"type": "read", "chat_id": C1, "seq": [1]},
        {"type": "read", "chat_id": C1, "seq": {"n": 1}},
        {"type": "read", "chat_id": C1, "seq": 1.5},
        {"type": "delivered", "chat_id": C1, "seq": "1.5"},
        {"type": "delivered", "chat_id": 1, "seq": 1},
        {"type": "ping", "ref": 1.5},
        {"type": "ping", "ref": [1]},
        {"type": "ping", "ref": "x" * 129},
    ],
)
def test_wrong_types_and_sizes_are_bad_frames(fields: dict[str, Any]) -> None:
    bad(frame(**fields))


@pytest.mark.parametrize("kind", ["read", "delivered"])
def test_a_boolean_is_not_a_seq(kind: str) -> None:
    bad(frame(type=kind, chat_id=C1, seq=True))


def test_a_boolean_ref_is_not_turned_into_an_int() -> None:
    result = parse(frame(type="ping", ref=True))
    # Either refused (as for an unknown type, where a boolean ref is dropped) or kept as is.
    assert isinstance(result, BadFrame) or result.ref is True


@pytest.mark.parametrize("kind", ["read", "delivered"])
@pytest.mark.parametrize(
    "seq",
    [-1, -(2**31), SEQ_MAX + 1, 2**63, 2**64, 10**30, 1e300, -1e300],
    ids=str,
)
def test_negative_or_huge_seq_is_a_bad_frame(kind: str, seq: int | float) -> None:
    # By hand: orjson does not serialize integers beyond 64 bits.
    result = bad(f'{{"type": "{kind}", "chat_id": "{C1}", "seq": {seq}, "ref": "r"}}')
    assert "seq" in result.detail
    assert result.ref == "r"


@pytest.mark.parametrize(
    "since",
    [
        {C1: -1},
        {C1: SEQ_MAX + 1},
        {C1: 2**63},
        {C1: "x"},
        {C1: None},
        {C1: 1.5},
        {C1: [1]},
        {"": 1},
        {"c" * 65: 1},
        [],
        [["c", 1]],
        "c",
        5,
        None,
    ],
    ids=repr,
)
def test_auth_since_with_bad_values_is_a_bad_frame(since: object) -> None:
    result = bad(frame(type="auth", token="t", since=since, ref=3))
    assert "since" in result.detail
    assert result.ref == 3


def test_auth_since_with_a_huge_seq_literal_is_a_bad_frame() -> None:
    result = bad('{"type": "auth", "token": "t", "since": {"' + C1 + '": 1' + "0" * 40 + "}}")
    assert "since" in result.detail


def test_auth_since_naming_too_many_chats_is_a_bad_frame() -> None:
    at_limit = {f"{i:032x}": i for i in range(MAX_SINCE)}
    ok = parse(frame(type="auth", token="t", since=at_limit))
    assert isinstance(ok, AuthFrame) and len(ok.since) == MAX_SINCE
    over = {**at_limit, "one-more": 1}
    assert "since" in bad(frame(type="auth", token="t", since=over)).detail


# --- connection state -------------------------------------------------------------------------


def test_a_connection_starts_awaiting_auth() -> None:
    assert ConnectionState().state is State.AWAITING_AUTH


@pytest.mark.parametrize(
    "path",
    [
        [State.READY],
        [State.CLOSED],
        [State.READY, State.CLOSED],
    ],
    ids=lambda p: "->".join(s.value for s in p),
)
def test_legal_transitions(path: list[State]) -> None:
    state = ConnectionState()
    for step in path:
        state.to(step)
        assert state.state is step


@pytest.mark.parametrize(
    ("before", "illegal"),
    [
        ([], State.AWAITING_AUTH),
        ([State.READY], State.AWAITING_AUTH),
        ([State.READY], State.READY),
        ([State.CLOSED], State.READY),
        ([State.CLOSED], State.AWAITING_AUTH),
        ([State.CLOSED], State.CLOSED),
        ([State.READY, State.CLOSED], State.READY),
        ([State.READY, State.CLOSED], State.CLOSED),
    ],
    ids=lambda v: v.value if isinstance(v, State) else "->".join(s.value for s in v) or "start",
)
def test_illegal_transitions_raise_and_change_nothing(before: list[State], illegal: State) -> None:
    state = ConnectionState()
    for step in before:
        state.to(step)
    current = state.state
    with pytest.raises(IllegalTransition, match=f"{current.value} -> {illegal.value}"):
        state.to(illegal)
    assert state.state is current


# --- token bucket ------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=2.0, burst=5, now=100.0)
    assert [bucket.take(100.0) for _ in range(5)] == [True] * 5
    assert [bucket.take(100.0) for _ in range(3)] == [False] * 3


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert all(bucket.take(0.0) for _ in range(3))
    assert not bucket.take(0.0)
    assert not bucket.take(0.25)  # half a token
    assert bucket.take(0.5)  # the refusal above cost nothing: one whole token by now
    assert not bucket.take(0.5)
    assert bucket.take(1.0)
    assert not bucket.take(1.0)


def test_token_bucket_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=4, now=0.0)
    assert all(bucket.take(0.0) for _ in range(4))
    assert not bucket.take(0.0)
    assert [bucket.take(3600.0) for _ in range(5)] == [True] * 4 + [False]


def test_token_bucket_sustains_its_rate() -> None:
    # Binary fractions, so the arithmetic is exact: 64 tries a second for 10 s at 16 a second.
    bucket = TokenBucket(rate=16.0, burst=1, now=0.0)
    granted = [bucket.take(i / 64) for i in range(641)]
    assert sum(granted) == 1 + 160  # the first token, then 16 a second
    assert all(granted[i] == (i % 4 == 0) for i in range(641))  # evenly: every fourth try


# --- flood guard ------------------------------------------------------------------------------


def test_flood_guard_trips_at_the_limit_within_the_window() -> None:
    guard = FloodGuard(limit=3, window_s=10.0)
    assert guard.refused(0.0) is False
    assert guard.refused(1.0) is False
    assert guard.refused(2.0) is True
    assert guard.refused(3.0) is True


def test_flood_guard_forgets_refusals_older_than_the_window() -> None:
    guard = FloodGuard(limit=3, window_s=10.0)
    assert not guard.refused(0.0)
    assert not guard.refused(1.0)
    # At 11.0 the refusals at 0.0 and 1.0 are 11 and 10 s old: both outside the window.
    assert not guard.refused(11.0)
    assert not guard.refused(12.0)
    assert guard.refused(13.0)


def test_flood_guard_spread_out_refusals_never_trip() -> None:
    guard = FloodGuard(limit=3, window_s=10.0)
    assert not any(guard.refused(t * 6.0) for t in range(1000))
    assert len(guard.refusals) <= 2  # old refusals are dropped, not kept forever


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message.send", "chat_id": C1, "content": "hi", "client_id": "a\x00b"},
        {"type": "message.send", "chat_id": "c\x00", "content": "hi", "client_id": "a"},
        {"type": "auth", "token": "tok\x00en"},
    ],
)
def test_nul_characters_make_a_bad_frame(frame: dict[str, object]) -> None:
    assert isinstance(parse(orjson.dumps(frame).decode()), BadFrame)
