"""Server processes for a run: starting them, and reading their CPU time and memory from /proc."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# 20,000 sockets per side, plus files: above the usual soft limit of the shell.
OPEN_FILES = 65536
STARTUP_TIMEOUT_S = 60.0


def raise_open_files() -> None:
    """Lift this process's open-file limit (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, OPEN_FILES)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tree(pid: int) -> list[int]:
    """The process and all its descendants (uvicorn's workers are children of the supervisor)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(tree(int(child)))
    return out


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float  # user + system, summed over the process tree
    rss_bytes: int


def usage(pids: Sequence[int]) -> Usage:
    cpu = 0
    rss = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            statm = Path(f"/proc/{pid}/statm").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        cpu += int(fields[11]) + int(fields[12])
        rss += int(statm.split()[1]) * PAGE
    return Usage(cpu_s=cpu / CLK_TCK, rss_bytes=rss)


def base_env() -> dict[str, str]:
    # Coverage's settings pass, so the servers of the suite's smoke run are measured too.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR", "COVERAGE_PROCESS_CONFIG")
    return {k: v for k, v in os.environ.items() if k in keep}


class Server:
    """A server process on 127.0.0.1, stopped (by its PID) when the run is over."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], port: int, log: Path
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self.log = log
        self.env = dict(env)
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            env={**base_env(), **env},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_open_files,
        )

    def pids(self) -> list[int]:
        return tree(self.proc.pid)

    @property
    def database(self) -> str | None:
        """The PostgreSQL database this server uses, whose backends' CPU a scenario can measure
        (SQLite's work is in the server's own CPU already)."""
        url = self.env.get("DATABASE_URL", "")
        return url.rsplit("/", 1)[-1].split("?")[0] if url.startswith("postgresql") else None

    def usage(self) -> Usage:
        return usage(self.pids())

    def wait_ready(self, path: str = "/healthz") -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {STARTUP_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def python() -> str:
    return sys.executable
