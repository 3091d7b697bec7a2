"""Inside a mount and network namespace of its own (tests/e2e/test_python_only_machine.py starts
it there): hides the machine's PostgreSQL and Redis programs, checks that they are gone and that
nothing answers on 5432 and 6379, then runs `scripts/services -- COMMAND...`, which must provide
both servers from the `services` extra.

    python -m tests.e2e.bare_machine -- COMMAND...

Exit status: COMMAND's; 3 when the machine could not be made bare."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.server_programs import SYSTEM_POSTGRES_ROOT, postgres_bin_dir, server_program

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORTS = (5432, 6379)  # where the machine's own servers listen
REDIS_PREFIXES = ("redis-", "valkey-")
# Linux's <linux/sockios.h> and <net/if.h>: get and set an interface's flags; "up".
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _hidden_names() -> set[str]:
    """Every program of the system's PostgreSQL installations (Debian also links psql,
    pg_dump, ... into /usr/bin), to be hidden wherever PATH has one."""
    names = {"postgres", "postmaster", "initdb", "pg_ctl", "pg_ctlcluster"}
    if SYSTEM_POSTGRES_ROOT.is_dir():
        for bin_dir in SYSTEM_POSTGRES_ROOT.glob("*/bin"):
            names.update(p.name for p in bin_dir.iterdir())
    return names


def _to_hide() -> list[Path]:
    names = _hidden_names()
    found: list[Path] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        d = Path(directory)
        if not d.is_dir() or d.resolve() == Path(sys.prefix).resolve() / "bin":
            continue
        found.extend(
            p
            for p in d.iterdir()
            if (p.name in names or p.name.startswith(REDIS_PREFIXES)) and os.path.lexists(p)
        )
    return found


def _bind(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True, timeout=30)


def _loopback_up() -> None:
    """A new network namespace has only `lo`, and down: bring it up (no iproute2 needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def make_bare() -> None:
    """Hide the programs (a file hidden under /dev/null is no longer executable, a directory
    under an empty one is empty); mounts made here vanish with the namespace."""
    for program in _to_hide():
        if program.resolve().is_file():
            _bind(Path("/dev/null"), program)
    if SYSTEM_POSTGRES_ROOT.is_dir():
        _bind(Path(tempfile.mkdtemp(prefix="bare-")), SYSTEM_POSTGRES_ROOT)
    _loopback_up()


def check_bare() -> None:
    """What a machine with Python and nothing else looks like; raise if this one does not."""
    for port in CLOSED_PORTS:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"127.0.0.1:{port} still answers"
    with socket.socket() as s:
        # The positive side: loopback works, so a closed port means no server, not no network.
        s.bind(("127.0.0.1", 0))
        s.listen()
        with socket.create_connection(s.getsockname(), timeout=2):
            pass
    prefix = Path(sys.prefix).resolve()
    # What the tests' lookup finds now: only the copies the `services` extra installed.
    for found in (postgres_bin_dir(), Path(server_program("redis-server"))):
        assert found.resolve().is_relative_to(prefix), f"{found} is not in {prefix}"
    print(f"bare: PostgreSQL from {postgres_bin_dir()}", flush=True)
    print(f"bare: Redis from {server_program('redis-server')}", flush=True)


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    try:
        make_bare()
        check_bare()
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        print(f"bare: could not make the machine bare: {exc!r}", file=sys.stderr, flush=True)
        sys.exit(3)
    done = subprocess.run([str(ROOT / "scripts" / "services"), "--", *command], check=False)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
