"""Finding rows by many composite keys at once, from an index on both databases.

The keys travel as parameters of one statement whose text never changes (a JSON array read by
`json_each` on SQLite, one array per column `unnest`ed on PostgreSQL), so SQLAlchemy compiles
it once. An OR of equalities was compiled again for every batch, and compiling it cost more
than running it; a tuple IN makes SQLite scan the whole table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, FromClause, Text, bindparam, cast, func

KeyTable = tuple[FromClause, list[ColumnElement[Any]]]


def key_table(dialect: str, width: int) -> KeyTable:
    """A table of the keys to look up (one row per key, `width` columns), and its columns.
    Join it to the table searched, matching each column."""
    if dialect == "sqlite":
        rows = func.json_each(bindparam("keys", type_=Text)).table_valued("value").alias("k")
        return rows, [func.json_extract(rows.c.value, f"$[{i}]") for i in range(width)]
    names = [f"k{i}" for i in range(width)]
    arrays = [cast(bindparam(name), ARRAY(Text)) for name in names]
    rows = func.unnest(*arrays).table_valued(*names).render_derived(name="k")
    return rows, [rows.c[name] for name in names]


def key_params(dialect: str, keys: Sequence[tuple[str, ...]], width: int) -> dict[str, Any]:
    unique = sorted(set(keys))
    if dialect == "sqlite":
        return {"keys": json.dumps(unique)}
    return {f"k{i}": [key[i] for key in unique] for i in range(width)}
