"""Request id, access log and request metrics, as one plain ASGI middleware (no per-request
task or body copy, unlike BaseHTTPMiddleware)."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reverb.logs import request_id
from reverb.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("reverb.access")

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is kept (to follow one request across services) only if it is short and plain.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def _incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SAFE_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope)
        token = request_id.set(rid)
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                request_id.reset(token)
            return

        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(template, method, str(status)).inc()
            HTTP_LATENCY.labels(template, method).observe(elapsed)
            log.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={"route": template, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id.reset(token)


# JSON bodies are small (a message is at most 4000 characters); bound what is read before
# validation so a huge body cannot tie up memory. Uploads have limits of their own.
MAX_JSON_BODY_BYTES = 1024 * 1024
UPLOAD_PATHS = frozenset({"/api/media", "/api/users/me/avatar"})


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_JSON_BODY_BYTES:
                await _too_large(send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_JSON_BODY_BYTES:
                # A body without a length that grows too big: stop reading it.
                return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited, send)


async def _too_large(send: Send) -> None:
    body = orjson.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"request bodies are at most {MAX_JSON_BODY_BYTES} bytes",
            "code": "payload_too_large",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
