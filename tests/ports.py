"""Free ports on 127.0.0.1, for the servers the tests and the benchmarks start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; another process may take it before
    the caller binds it, which the callers' start-up checks would report)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
