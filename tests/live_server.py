"""The app as `reverb serve` runs it, on a real uvicorn server in the test's own process: real
sockets, and the app's objects at hand (its engine, to count statements)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from reverb.api.deps import Services
from reverb.app import SocketsFirst, create_app
from reverb.config import Settings
from tests.ports import free_port

WAIT_S = 10.0


@dataclass
class Live:
    url: str
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def services(self) -> Services:
        found: Services = self.app.state.services
        return found


@asynccontextmanager
async def live(settings: Settings) -> AsyncIterator[Live]:
    """The app as `reverb serve` runs it, on a free port, in this process; uvicorn's default
    frame size limit (not `reverb serve`'s 64 KiB), so an auth frame can name 10,001 chats."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        SocketsFirst(app), host="127.0.0.1", port=port, lifespan="on", log_config=None
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(WAIT_S):
            while not srv.started:
                await asyncio.sleep(0.01)  # poll interval, bounded by the timeout above
        async with httpx.AsyncClient(base_url=url) as http:
            yield Live(url, app, http)
    finally:
        srv.should_exit = True
        await task
