"""Plain types shared by every layer; no I/O."""
