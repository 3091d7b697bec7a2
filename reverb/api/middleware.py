"""Request id, access log, request metrics and the security headers of every response, as one
plain ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Iterable

import orjson
from starlette.requests import Request
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


Header = tuple[bytes, bytes]
# Every response: browsers take its declared type, never a sniffed one (a JSON body or an
# uploaded file is never run as HTML or script).
NOSNIFF = (b"x-content-type-options", b"nosniff")
# Token and profile answers (and the password change, the avatar) are not kept by browsers or
# proxies.
NO_STORE = (b"cache-control", b"no-store")
# The docs page loads Swagger UI from this server only (/api/docs/static); the CSP allows that,
# plus the page's own inline start-up script by its hash. Swagger UI sets inline styles and
# draws icons from data: URLs; "Try it out" calls this origin.
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(page: bytes) -> bytes:
    """The Content-Security-Policy of a docs page: its assets, and its inline scripts."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ).encode()


def _no_store(path: str) -> bool:
    return (
        path.startswith("/api/auth/")
        or path == "/api/users/me"
        or path.startswith("/api/users/me/")
    )


def _with(
    headers: Iterable[tuple[bytes, bytes]], *add: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """`headers` with each of `add` set (replacing a value the app gave)."""
    names = {name for name, _ in add}
    return [*(h for h in headers if h[0].lower() not in names), *add]


class RequestContext:
    def __init__(self, app: ASGIApp, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)

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
        started = False
        path = scope["path"]
        added = [(REQUEST_ID_HEADER, rid.encode()), NOSNIFF]
        if _no_store(path):
            added.append(NO_STORE)
        docs_page = path in self.docs_paths
        held: Message | None = None  # a docs page's start, until its body is known
        body = b""

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, held, body
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = _with(message.get("headers", []), *added)
                if docs_page:
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                csp = (b"content-security-policy", docs_policy(body))
                held["headers"] = _with(held["headers"], csp)
                await send(held)
                held = None
                message = {"type": "http.response.body", "body": body}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise
            # Answered here rather than by Starlette's outermost error middleware, so that a
            # 500 carries these headers too; by the app's own handler (which logs it).
            handler = scope["app"].exception_handlers.get(Exception)
            if handler is None:
                raise
            response = await handler(Request(scope), exc)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(template, method, str(status)).inc()
            HTTP_LATENCY.labels(template, method).observe(elapsed)
            client = scope.get("client")
            log.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                # As fields too, for JSON logs: what a log search filters on.
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "route": template,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                    "user_id": scope.get("state", {}).get("user_id"),
                },
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
