"""docs/schema.md is what the tables make of it now (regenerate it when they change)."""

from __future__ import annotations

from pathlib import Path

from reverb.storage.diagram import NOTES, render
from reverb.storage.tables import metadata

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_every_table_has_a_note() -> None:
    assert set(NOTES) == set(metadata.tables)


def test_the_committed_diagram_matches_the_tables() -> None:
    assert DOC.read_text() == render(), (
        "docs/schema.md is out of date: python -m reverb.storage.diagram > docs/schema.md"
    )
