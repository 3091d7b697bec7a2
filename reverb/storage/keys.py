"""Finding rows by many composite keys at once, from an index on both databases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

# SQLite parses an OR of n terms as an expression n levels deep and refuses more than 1000.
MAX_TERMS = 250


def any_key(
    columns: Sequence[ColumnElement[Any]], keys: Iterable[tuple[str, ...]]
) -> list[ColumnElement[bool]]:
    """Conditions, one per query to run, that together match the rows whose `columns` equal
    one of `keys`. An OR of equalities rather than a tuple IN: SQLite answers a tuple IN by
    scanning the whole table, this one with an index lookup per key (as PostgreSQL does)."""
    unique = sorted(set(keys))
    return [
        or_(
            *(
                and_(*(column == value for column, value in zip(columns, key, strict=True)))
                for key in unique[start : start + MAX_TERMS]
            )
        )
        for start in range(0, len(unique), MAX_TERMS)
    ]
