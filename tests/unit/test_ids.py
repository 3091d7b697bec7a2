from __future__ import annotations

import uuid

from reverb.ids import is_id, new_id


def test_ids_are_uuid7_hex_and_time_ordered() -> None:
    made = [new_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(is_id(i) and uuid.UUID(i).version == 7 for i in made)
    # Millisecond prefix: ids from later milliseconds sort later.
    assert made[0][:12] <= made[-1][:12]


def test_is_id_refuses_anything_else() -> None:
    for bad in ("", "0" * 31, "g" * 32, "0" * 33, "../" + "0" * 29, "A" * 32):
        assert not is_id(bad)
