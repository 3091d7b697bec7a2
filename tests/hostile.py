"""A corpus of hostile values, and a snapshot of everything stored, for the tests that throw the
corpus at every field of every endpoint and WebSocket frame (issue 11, part 3).

Every value here is wrong for every field of its kind, so whatever field it lands in, the answer
must be a 4xx problem (an `error` frame on the socket) and nothing stored may change."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from reverb.storage.db import Database
from reverb.storage.tables import metadata


class Raw(str):
    """A JSON text to splice in as it is: values `json.dumps` cannot or will not write."""


DEPTH = 5000  # past Python's recursion limit, for parsers that recurse
HUGE = "x" * 100_000  # longer than any field allows

# Wrong for any field: text that is not text, booleans, numbers out of every range, floats,
# containers where a scalar goes, nested junk, over-long strings, JSON numbers no parser holds.
ANY: list[Any] = [
    "\ud800",
    "a\udc00b",
    "\udfff\ud800",
    "\x00",
    "ok\x00",
    True,
    False,
    2**64,
    -(2**63) - 1,
    1e308,
    -1.5,
    1.5,
    {},
    {"$ne": None},
    [[[["deep"]]]],
    HUGE,
    Raw("NaN"),
    Raw("Infinity"),
    Raw("1e999"),
    Raw("9" * 5000),
    Raw("[" * DEPTH + "]" * DEPTH),
    Raw('{"a":' * DEPTH + "1" + "}" * DEPTH),
]

# Wrong for a field of that kind (in addition to ANY).
BY_KIND: dict[str, list[Any]] = {
    "text": [["a list"]],
    "int": [-1, 2**31, "5", "1", None, 2.5, ["1"]],
    "id": [
        "nope",
        "A" * 32,
        "0" * 31,
        "0" * 33,
        "0" * 32 + "\n",
        " " + "0" * 31,
        "",
        ["0" * 32],
    ],
    # A list of ids: a list holding one hostile item, or not a list at all.
    "ids": ["0" * 32, "x" * 33, None, 7],
}


def values(kind: str) -> list[Any]:
    if kind == "ids":
        return [*BY_KIND["ids"], *([v] for v in [*ANY, *BY_KIND["id"]]), ["0" * 32] * 101]
    return [*ANY, *BY_KIND[kind]]


def not_text(value: Any) -> bool:
    """Whether `value` holds a string with NUL or an unpaired surrogate: 422 wherever it is."""
    if isinstance(value, list):
        return any(not_text(v) for v in value)
    return (
        isinstance(value, str)
        and not isinstance(value, Raw)
        and ("\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value))
    )


def encode(body: Any) -> bytes:
    """JSON for `body`, with Raw values spliced in and surrogates as \\u escapes (the only way
    they travel in UTF-8 JSON)."""
    raws: list[Raw] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(body))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw)
    return text.encode("ascii")


def label(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:30]}...({len(shown)} chars)"


async def snapshot(
    db: Database, ignore: frozenset[str] = frozenset()
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order; `ignore` names columns ("table.column") that
    change without any client asking (a socket's close sets users.last_seen_at)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.read() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if f"{table.name}.{c.name}" not in ignore]
            rows = await conn.execute(select(*columns))
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out
