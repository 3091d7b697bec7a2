"""`GET /ws`: the WebSocket protocol of the API contract, over Starlette's WebSocket.

Frames in become service calls; events out come from the hub through the connection's queue.
Only the connection's writer task writes to the socket once the connection is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket
from msgspec import Raw, Struct
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from reverb.config import Settings
from reverb.domain.users import User
from reverb.domain.wire import MeView, encode
from reverb.errors import ErrorCode, ReverbError
from reverb.metrics import WS_CLOSES, WS_CONNECTIONS
from reverb.realtime.connection import CLOSE_GONE, CatchUp, Connection, OwnFrame
from reverb.realtime.hub import Hub
from reverb.realtime.protocol import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FLOODING,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    AuthFrame,
    BadFrame,
    ClientFrame,
    ConnectionState,
    DeliveredFrame,
    FloodGuard,
    PingFrame,
    ReadFrame,
    SendFrame,
    State,
    TokenBucket,
    TypingFrame,
    parse,
)
from reverb.realtime.transport import CLOSE_GRACE_S, CLOSE_SERVICE_RESTART, transport_for
from reverb.services.auth import AuthService
from reverb.services.chats import ChatService
from reverb.services.live import PresenceService, TypingService
from reverb.services.markers import Markers
from reverb.services.messages import MessageService
from reverb.services.ratelimits import RateLimiter, Rule
from reverb.storage.outage import DatabaseUnavailable

log = logging.getLogger(__name__)
router = APIRouter()

# Refusals within FLOOD_WINDOW_S before a client that ignores `rate_limited` is disconnected.
FLOOD_LIMIT = 20
FLOOD_WINDOW_S = 10.0
# Read/delivered frames per connection: a client marks as messages arrive and as its user
# reads, so a busy group can ask for several a second; each accepted one costs a dict update
# (markers are coalesced and written in batches), so the limit only stops a flood.
MARKER_RATE = 20.0  # per second
MARKER_BURST = 100


@dataclass(slots=True)
class Realtime:
    settings: Settings
    hub: Hub
    auth: AuthService
    chats: ChatService
    messages: MessageService
    markers: Markers
    typing: TypingService
    presence: PresenceService
    limiter: RateLimiter


# The frames the server answers a client with, encoded by the one wire encoder. The client's
# `ref` comes last, and only when the client gave one (defaults are left out).
Ref = str | int | None


class Reply(Struct, kw_only=True, tag_field="type", omit_defaults=True):
    pass


class Ready(Reply, kw_only=True, tag="ready"):
    user: MeView
    ref: Ref = None


class Ack(Reply, kw_only=True, tag="ack"):
    # A send's message as its `message.created` carries it: its bytes, spliced in.
    message: Raw | None = None
    ref: Ref = None


class Pong(Reply, kw_only=True, tag="pong"):
    ref: Ref = None


class Error(Reply, kw_only=True, tag="error"):
    code: str
    detail: str
    ref: Ref = None


def _error(code: str, detail: str, ref: Ref = None) -> bytes:
    return encode(Error(code=code, detail=detail, ref=ref))


WS_PATH = "/ws"


@router.websocket(WS_PATH)
async def websocket_endpoint(websocket: WebSocket) -> None:
    rt: Realtime = websocket.app.state.realtime
    await Session(websocket, rt).run()


async def serve_asgi(app: Starlette, scope: Scope, receive: Receive, send: Send) -> None:
    """`/ws` straight from the server, without the HTTP middleware and router around it
    (see reverb.app.SocketsFirst): the same session, minus the call frames each of them would
    keep alive for as long as the socket is open."""
    scope["app"] = app
    await websocket_endpoint(WebSocket(scope, receive, send))


class Session:
    def __init__(self, ws: WebSocket, rt: Realtime) -> None:
        self.ws = ws
        self.rt = rt
        self.state = ConnectionState()
        now = time.monotonic()
        self.marker_bucket = TokenBucket(MARKER_RATE, MARKER_BURST, now)
        self.flood = FloodGuard(FLOOD_LIMIT, FLOOD_WINDOW_S)
        # For the one log line of each close: whose socket, and the code it closed with (the
        # server's, else the client's, 1005/1006 for a socket that was just lost).
        self.user_id: str | None = None
        self.close_code: int | None = None
        self.transport = transport_for(ws)

    async def run(self) -> None:
        origins = self.rt.settings.cors_origins
        origin = self.ws.headers.get("origin")
        # Browsers always send Origin; native clients send none and are not CORS's concern.
        if origins and origin is not None and origin.rstrip("/") not in origins:
            await self.ws.close(code=1008)  # before accept: the upgrade is refused with 403
            return
        await self.ws.accept()
        try:
            auth = await self._await_auth()
            if auth is not None:
                frame, user = auth
                self.user_id = user.id
                client = self.ws.client.host if self.ws.client else None
                log.info("ws connected", extra={"user_id": user.id, "client": client})
                await self._serve(frame, user)
        except WebSocketDisconnect as exc:
            self.close_code = self.close_code or exc.code
        finally:
            log.info(
                "ws closed %s",
                self.close_code,
                extra={"user_id": self.user_id, "code": self.close_code},
            )

    async def _close(self, code: int, reason: str = "") -> None:
        if self.state.state is not State.CLOSED:
            self.state.to(State.CLOSED)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def _refuse(self, code: int, reason: str) -> None:
        """Close during authentication (the connection's own closes are counted there)."""
        WS_CLOSES.labels(str(code)).inc()
        self.close_code = code
        await self._close(code, reason)

    async def _await_auth(self) -> tuple[AuthFrame, User] | None:
        deadline = time.monotonic() + self.rt.settings.ws_auth_timeout_seconds
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), deadline - time.monotonic())
            except TimeoutError:
                await self._refuse(CLOSE_AUTH_TIMEOUT, "no auth frame in time")
                return None
            if message["type"] == "websocket.disconnect":
                self.close_code = message.get("code", 1005)
                if self.transport.draining:
                    await self._refuse(CLOSE_SERVICE_RESTART, "server restart")
                return None
            frame = self._parse(message)
            if frame.type == "auth" and await self._auth_limited(frame.ref):
                return None
            if isinstance(frame, BadFrame) and frame.type == "auth" and not frame.about("since"):
                # An auth frame whose token is missing, empty or absurd: a bad token. A bad
                # `since` (over MAX_SINCE chats, say) is a bad frame, answered as one below.
                await self._refuse(CLOSE_UNAUTHORIZED, "invalid or expired token")
                return None
            if isinstance(frame, BadFrame):
                await self.ws.send_text(_error(frame.code, frame.detail, frame.ref).decode())
            elif not isinstance(frame, AuthFrame):
                await self.ws.send_text(
                    _error(
                        ErrorCode.NOT_AUTHENTICATED, "send an auth frame first", frame.ref
                    ).decode()
                )
            else:
                try:
                    # Fresh: `ready` shows the profile, and the socket keeps this user.
                    user = await self.rt.auth.authenticate(frame.token, fresh=True)
                except DatabaseUnavailable:
                    await self._refuse(CLOSE_TRY_AGAIN_LATER, "database unavailable")
                    return None
                except ReverbError:
                    await self._refuse(CLOSE_UNAUTHORIZED, "invalid or expired token")
                    return None
                self.state.to(State.READY)
                return frame, user

    async def _auth_limited(self, ref: str | int | None) -> bool:
        """Count an auth attempt of the client's address; over the limit, refuse and close."""
        address = self.ws.client.host if self.ws.client else "unknown"
        wait = await self.rt.limiter.retry_after(Rule.WS_AUTH, address)
        if wait is None:
            return False
        detail = f"too many auth attempts from this address; try again in {wait} s"
        with contextlib.suppress(Exception):
            await self.ws.send_text(_error(ErrorCode.RATE_LIMITED, detail, ref).decode())
        await self._refuse(CLOSE_FLOODING, "too many auth attempts")
        return True

    @staticmethod
    def _parse(message: Mapping[str, Any]) -> ClientFrame | BadFrame:
        text = message.get("text")
        if not isinstance(text, str):
            return BadFrame("send JSON in text frames")
        return parse(text)

    async def _serve(self, auth: AuthFrame, user: User) -> None:
        rt = self.rt
        conn = Connection(
            user_id=user.id,
            transport=self.transport,
            read_log=rt.chats.log_between,
            max_queue=rt.settings.ws_queue_size,
            on_left=rt.hub.detach,
        )
        # `ready` is the first frame; the writer starts only once the connection follows its
        # chats, so every event committed after a client sees `ready` reaches it.
        conn.push(OwnFrame(encode(Ready(user=MeView.of(user, online=True), ref=auth.ref))))
        rt.hub.register(conn)
        WS_CONNECTIONS.inc()
        try:
            try:
                await rt.presence.connected(user.id)
                await self._start(conn, auth, user)
            except DatabaseUnavailable:
                # Still authenticating as far as the client knows: `ready` has not gone out.
                conn.close_soon(CLOSE_TRY_AGAIN_LATER, "database unavailable")
                conn.start()
                return
            conn.start()
            await self._read_frames(conn, user)
        except WebSocketDisconnect as exc:
            self.close_code = exc.code
        finally:
            if conn.closing is not None and (conn.closing != CLOSE_GONE or not self.close_code):
                self.close_code = conn.closing  # the server's decision, not how it ended
            rt.hub.unregister(conn)
            WS_CONNECTIONS.dec()
            # When the server decided to close, the close frame goes out first (bounded).
            await conn.stop(CLOSE_GRACE_S)
            try:
                await rt.presence.disconnected(user.id)
            except DatabaseUnavailable:
                pass  # logged where it happened; `last_seen_at` is set at the next disconnect
            except Exception:
                # The socket is gone either way; presence heals by its TTL or the next connect.
                log.exception("ws: presence update on disconnect failed")

    async def _start(self, conn: Connection, auth: AuthFrame, user: User) -> None:
        """Subscribe first, then read: an event committed meanwhile is either in the replay,
        or delivered live, or both (the writer drops the copy); never in neither.

        Subscribed means confirmed by the bus: first the user's own topic (a chat they join
        from now on is announced there), then, once the first read named their chats, those
        chats' shards; only then are positions read again and replays started."""
        rt = self.rt
        await rt.hub.follow(conn)
        current = await rt.chats.positions(user_id=user.id)
        for chat_id, last in current.items():
            rt.hub.attach(conn, chat_id, min(auth.since.get(chat_id, last), last))
        await rt.hub.follow(conn)
        # One read, however many chats `since` names: the user's chats as they are now, and the
        # events that removed them from others (other ids are simply not in the answer).
        standing = await rt.chats.standing(user_id=user.id)
        for chat_id, seq in auth.since.items():
            removal = None if chat_id in current else standing.removals.get(chat_id)
            if removal is not None and removal.seq > seq:
                conn.push(OwnFrame(removal.data.encode()))
        # Behind at either read, including anything committed in between: one catch-up each
        # (it runs once the writer starts, and reads to the end of the log).
        for chat_id in current.keys() | standing.positions.keys():
            last = max(current.get(chat_id, 0), standing.positions.get(chat_id, 0))
            if chat_id in conn.positions and last > conn.positions[chat_id]:
                conn.push(CatchUp(chat_id))

    async def _read_frames(self, conn: Connection, user: User) -> None:
        while conn.closing is None:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.close_code = message.get("code", 1005)
                if self.transport.draining:
                    # Every frame read before this one has been answered (one at a time):
                    # those replies go out, then the close.
                    conn.close_soon(CLOSE_SERVICE_RESTART, "server restart", flush=True)
                return
            frame = self._parse(message)
            if isinstance(frame, BadFrame):
                conn.push(OwnFrame(_error(frame.code, frame.detail, frame.ref)))
                continue
            try:
                reply = await self._handle(conn, frame, user)
            except ReverbError as exc:
                reply = _error(exc.code.value, exc.detail, frame.ref)
            except Exception:
                log.exception("ws: %s failed", frame.type)
                reply = _error(ErrorCode.INTERNAL_ERROR, "the server could not do that", frame.ref)
            if reply is not None:
                conn.push(OwnFrame(reply))

    def _rate_limited(self, conn: Connection, detail: str, ref: str | int | None) -> bytes | None:
        """`rate_limited`, or for a client that keeps ignoring it, that and a close."""
        refusal = _error(ErrorCode.RATE_LIMITED, detail, ref)
        if self.flood.refused(time.monotonic()):
            conn.push(OwnFrame(refusal))  # owed before the close
            conn.close_soon(CLOSE_FLOODING, "too many frames over the rate limit", flush=True)
            return None
        return refusal

    async def _handle(self, conn: Connection, frame: ClientFrame, user: User) -> bytes | None:
        rt = self.rt
        ref = frame.ref
        if isinstance(frame, PingFrame):
            return encode(Pong(ref=ref))
        if isinstance(frame, AuthFrame):
            return _error("invalid_frame", "already authenticated", ref)
        if isinstance(frame, SendFrame):
            # The same rule, and per user the same budget, as `POST /api/messages`.
            if await rt.limiter.retry_after(Rule.MESSAGES, user.id) is not None:
                return self._rate_limited(conn, "slow down", ref)
            message, _ = await rt.messages.send(
                me=user,
                chat_id=frame.chat_id,
                content=frame.content,
                client_id=frame.client_id,
                reply_to_id=frame.reply_to_id,
                attachment_ids=frame.attachment_ids,
            )
            # The message's bytes as `message.created` carries them, not encoded again.
            return encode(Ack(message=Raw(message.json), ref=ref))
        if isinstance(frame, TypingFrame):
            await rt.typing.typing(user_id=user.id, chat_id=frame.chat_id)
        elif isinstance(frame, ReadFrame | DeliveredFrame):
            if not self.marker_bucket.take(time.monotonic()):
                return self._rate_limited(conn, "too many markers", ref)
            read = isinstance(frame, ReadFrame)
            if frame.chat_id in conn.positions:
                # Its socket follows the chat: a member; the mark is written within an instant.
                rt.markers.mark_soon(
                    user_id=user.id, chat_id=frame.chat_id, seq=frame.seq, read=read
                )
            else:
                await rt.markers.mark(me=user, chat_id=frame.chat_id, seq=frame.seq, read=read)
        return encode(Ack(ref=ref)) if ref is not None else None
