"""The image-upload scenario: uploads at once of a 37 KB PNG that decodes to 40 MB (6000x6600
grey pixels), against a server process of its own. What it measures is how far the server's
peak RSS rises over what it held before (issue 11: by at most 300 MB for 8 uploads), and that
each upload gets a clear answer (201, or a 4xx problem; never a 5xx or a dropped connection).
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench import seed
from bench.procs import Server

RSS_RISE_LIMIT_MIB = 300
SIDE = (6000, 6600)


def grey_png() -> bytes:
    """Zero-filled grey pixels compress to almost nothing: 37 KB on the wire, 40 MB decoded."""
    buf = io.BytesIO()
    Image.new("L", SIDE).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


async def load(spec: dict[str, Any]) -> dict[str, Any]:
    """In the load generator: the uploads, all at once; their answers."""
    data = grey_png()
    headers = {"Authorization": f"Bearer {spec['token']}"}
    files = {"file": ("grey.png", data, "image/png")}
    limits = httpx.Limits(max_connections=spec["count"])
    async with httpx.AsyncClient(
        base_url=spec["target"]["http_url"], timeout=120, limits=limits
    ) as client:
        answers = await asyncio.gather(
            *(
                client.post("/api/media", files=files, headers=headers)
                for _ in range(spec["count"])
            ),
            return_exceptions=True,
        )
    statuses = Counter(
        str(a.status_code) if isinstance(a, httpx.Response) else type(a).__name__ for a in answers
    )
    return {"png_bytes": len(data), "statuses": dict(statuses)}


def measure(server: Server, count: int, run_load: Any) -> dict[str, Any]:
    """In the orchestrator: set up a user, warm the server up with one small image (Pillow's
    plugins loaded, a decode thread started), then the uploads; RSS before, peak after."""
    pid = server.proc.pid
    with httpx.Client(base_url=server.url, timeout=60) as client:
        users = seed.register(client, 1, f"up{secrets.token_hex(3)}")
        token = users.tokens[0]
        small = io.BytesIO()
        Image.new("L", (64, 64)).save(small, "PNG")
        client.post(
            "/api/media",
            files={"file": ("warm.png", small.getvalue(), "image/png")},
            headers={"Authorization": f"Bearer {token}"},
        ).raise_for_status()
    rss_before = _status_kib(pid, "VmRSS")
    result: dict[str, Any] = run_load({"token": token, "count": count})
    peak_after = _status_kib(pid, "VmHWM")
    alive = server.proc.poll() is None and httpx.get(server.url + "/healthz").status_code == 200
    rise = round((peak_after - rss_before) / 1024, 1)
    clear = all(s.isdigit() and 200 <= int(s) < 500 for s in result["statuses"])
    return {
        **result,
        "uploads": count,
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_after_mib": round(peak_after / 1024, 1),
        "peak_rss_rise_mib": rise,
        "rss_rise_limit_mib": RSS_RISE_LIMIT_MIB,
        "every_answer_clear": clear,
        "server_up_after": alive,
        "ok": clear and alive and rise <= RSS_RISE_LIMIT_MIB,
    }
