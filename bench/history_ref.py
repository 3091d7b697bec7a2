"""The bare history reference: Reverb's own page statement through the same driver, rows to
JSON with Reverb's own encoder, in a bare ASGI app under the same server (uvicorn, uvloop,
httptools). No framework, no ORM, no authentication, no middleware: what a history page costs
here when nothing but the query and the JSON is paid for.

    python -m bench.history_ref --port 8766 --database-url sqlite:///x.db --viewer USER_ID
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import uvicorn
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url

from reverb.api.schemas import MessagePage
from reverb.domain.wire import encode
from reverb.services.views import message_page
from reverb.storage.history import page_statement

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Query = Callable[[str, Sequence[Any]], Awaitable[Sequence[Any]]]
PREFIX = "/api/messages/"


def driver_sql(dialect: Dialect, name: str, before: bool, after: bool) -> tuple[str, list[str]]:
    """The statement as the driver takes it, and the order of its parameters."""
    compiled = page_statement(name, before, after).compile(dialect=dialect)
    return str(compiled), list(compiled.positiontup or ())


class App:
    def __init__(self, database_url: str, viewer: str) -> None:
        self.url = make_url(database_url)
        self.viewer = viewer
        self.query: Query | None = None
        self.name = "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"
        dialect: Dialect = (
            sqlite.dialect() if self.name == "sqlite" else postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
        )
        flags = (False, True)
        self.sql = {(b, a): driver_sql(dialect, self.name, b, a) for b in flags for a in flags}

    async def start(self) -> None:
        if self.name == "sqlite":
            # Run on the event loop, as Reverb runs its SQLite statements.
            conn = sqlite3.connect(self.url.database or "", check_same_thread=False)

            async def query(sql: str, params: Sequence[Any]) -> Sequence[Any]:
                return conn.execute(sql, params).fetchall()

        else:
            # A pool the size of Reverb's (DATABASE_POOL_SIZE's default).
            pool = await asyncpg.create_pool(
                self.url.set(drivername="postgresql").render_as_string(hide_password=False),
                min_size=10,
                max_size=10,
            )

            async def query(sql: str, params: Sequence[Any]) -> Sequence[Any]:
                async with pool.acquire() as conn:
                    return await conn.fetch(sql, *params)  # type: ignore[no-any-return]

        self.query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await self.start()
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        if path == "/healthz":
            await respond(send, 200, b"ok\n")
        elif path.startswith(PREFIX) and self.query is not None:
            await respond(send, 200, await self.page(path[len(PREFIX) :], scope["query_string"]))
        else:
            await respond(send, 404, b"{}")

    async def page(self, chat_id: str, query_string: bytes) -> bytes:
        assert self.query is not None
        args = dict(parse_qsl(query_string.decode("latin-1")))
        limit = int(args.get("limit", 50))
        before = int(args["before"]) if "before" in args else None
        after = int(args["after"]) if "after" in args else None
        values = {
            "chat_id": chat_id,
            "viewer_id": self.viewer,
            "limit": limit + 1,
            "before": before,
            "after": after,
        }
        sql, order = self.sql[(before is not None, after is not None)]
        rows = list(await self.query(sql, [values[name] for name in order]))
        more = len(rows) > limit
        del rows[limit:]
        if after is None:
            rows.reverse()
        return encode(MessagePage(items=message_page(rows), has_more=more))


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--viewer", required=True, help="the user whose pages these are")
    args = parser.parse_args()
    uvicorn.run(
        App(args.database_url, args.viewer),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
