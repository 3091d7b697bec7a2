"""The raw reference: a minimal broadcast server on the plain `websockets` library.

No auth, no storage, no validation beyond parsing JSON: a `message.send` is numbered, encoded
once and broadcast to the connections in its room, and the sender gets an `ack`. Frames look
like Reverb's so the same load-generator client drives both. This is the machine's limit for a
Python WebSocket server; Reverb's figures are reported as ratios to it.

    python -m bench.raw_server --port 8765
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

rooms: dict[str, set[ServerConnection]] = defaultdict(set)
seqs: dict[str, int] = defaultdict(int)


async def handler(ws: ServerConnection) -> None:
    joined: list[str] = []
    try:
        async for raw in ws:
            frame = orjson.loads(raw)
            kind = frame.get("type")
            if kind == "auth":
                joined = list(frame.get("chats", ()))
                for chat in joined:
                    rooms[chat].add(ws)
                await ws.send(orjson.dumps({"type": "ready", "ref": frame.get("ref")}).decode())
            elif kind == "message.send":
                chat = frame["chat_id"]
                seqs[chat] += 1
                # About the shape and size of Reverb's message, so frames cost alike to write.
                message = {
                    "id": f"{time.time_ns():032x}",
                    "chat_id": chat,
                    "seq": seqs[chat],
                    "sender_id": frame.get("sender", ""),
                    "content": frame["content"],
                    "client_id": frame.get("client_id"),
                    "reply_to_id": None,
                    "attachments": [],
                    "reactions": [],
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                    "edited_at": None,
                    "deleted": False,
                }
                event = {"type": "message.created", "chat_id": chat, "seq": seqs[chat]}
                broadcast(rooms[chat], orjson.dumps({**event, "message": message}).decode())
                ack = {"type": "ack", "ref": frame.get("ref"), "message": message}
                await ws.send(orjson.dumps(ack).decode())
            elif kind == "ping":
                await ws.send(orjson.dumps({"type": "pong", "ref": frame.get("ref")}).decode())
    except ConnectionClosed:
        pass
    finally:
        for chat in joined:
            rooms[chat].discard(ws)


async def health(connection: ServerConnection, request: Request) -> Response | None:
    # Lets the harness wait on GET /healthz like it does for Reverb.
    if request.path == "/healthz":
        return connection.respond(200, "ok\n")
    return None


async def main(port: int) -> None:
    async with serve(
        handler, "127.0.0.1", port, process_request=health, max_size=64 * 1024, backlog=4096
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
