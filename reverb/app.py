"""Composition root: builds the FastAPI app and wires services to storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from redis.asyncio import Redis, RedisCluster
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from reverb import __version__, logs, metrics
from reverb.api import problems, structs
from reverb.api.deps import Services
from reverb.api.middleware import BodyLimit, RequestContext
from reverb.api.routes import auth, chats, media, messages, ops, users
from reverb.config import Settings, load_settings
from reverb.domain.events import LOGGED_EVENTS
from reverb.domain.wire import MessageView
from reverb.realtime import gateway
from reverb.realtime.bus import Bus
from reverb.realtime.bus.memory import MemoryBus
from reverb.realtime.bus.redis import RedisBus
from reverb.realtime.bus.relay import Relay
from reverb.realtime.gateway import Realtime
from reverb.realtime.hub import Hub
from reverb.services.access_cache import AccessCache
from reverb.services.auth import AuthService
from reverb.services.chats import ChatService
from reverb.services.deletion import AccountDeletion
from reverb.services.email_codes import EmailCodes
from reverb.services.eventlog import EventLog
from reverb.services.export import DataExport
from reverb.services.health import HealthService
from reverb.services.live import PresenceService, TypingService
from reverb.services.login_limits import LoginLimiter
from reverb.services.mailer import Mailer
from reverb.services.markers import Markers
from reverb.services.media import MediaService
from reverb.services.messages import MessageService
from reverb.services.passwords import Passwords
from reverb.services.publish import Publisher
from reverb.services.ratelimits import RateLimiter
from reverb.services.recovery import Recovery
from reverb.services.social import SocialLogin
from reverb.services.tokens import AccessTokens
from reverb.services.users import UserService
from reverb.storage.db import Database
from reverb.storage.files import blob_store

DESCRIPTION = """Reverb: a real-time chat backend.

Authenticate with `POST /api/auth/login` (or the **Authorize** button, which uses
`POST /api/auth/token`) and send `Authorization: Bearer <access_token>`. Every error is an
RFC 9457 problem (`application/problem+json`) with a stable `code`.
"""


# Redis answers in well under a millisecond; a command without an answer after this long
# meets a Redis that is stopped or cut off, and the caller (presence, typing) falls back to
# what this process knows rather than holding up a socket. Publishing has its own, shorter
# bound (reverb.realtime.bus.relay). The subscription waits with its own timeout per read.
REDIS_TIMEOUT_S = 1.0


def build_services(settings: Settings) -> Services:
    db = Database(settings.sqlalchemy_url, pool_size=settings.database_pool_size)
    redis: Redis | None = None
    bus: Bus = MemoryBus()
    if settings.redis_url and settings.redis_cluster:
        # Presence, typing and health use single-key commands and pipelines, which the cluster
        # client offers with the same signatures (it routes each key to its node); it is not a
        # subclass of the single-node client they are typed with.
        redis = cast(
            Redis,
            RedisCluster.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            ),
        )
        bus = RedisBus(settings.redis_url, cluster=True)
    elif settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        bus = RedisBus(settings.redis_url)
    publisher = Publisher(Relay(bus))
    log = EventLog(publisher=publisher)
    presence = PresenceService(
        db=db, publisher=publisher, redis=redis, ttl=settings.presence_ttl_seconds
    )
    sessions = AccessCache()
    mailer = Mailer(
        server=settings.smtp, sender=settings.mail_from, log_bodies=not settings.production
    )
    codes = EmailCodes(settings, mailer)
    auth = AuthService(
        db=db,
        settings=settings,
        passwords=Passwords(settings),
        access=AccessTokens(settings),
        limiter=LoginLimiter(settings),
        publisher=publisher,
        sessions=sessions,
        codes=codes,
    )
    chats = ChatService(db=db, log=log, online=presence.online)
    files = blob_store(settings)
    media = MediaService(db=db, files=files, settings=settings, sessions=sessions)
    social = SocialLogin(settings, auth)
    return Services(
        settings=settings,
        db=db,
        redis=redis,
        auth=auth,
        recovery=Recovery(auth, codes),
        users=UserService(db=db, sessions=sessions),
        chats=chats,
        markers=Markers(db, publisher),
        messages=MessageService(db=db, log=log, pool_size=settings.database_pool_size),
        bus=bus,
        publisher=publisher,
        presence=presence,
        media=media,
        deletion=AccountDeletion(auth, chats, media, social),
        social=social,
        export=DataExport(db, chats),
        health=HealthService(db=db, redis=redis, media=files),
        mailer=mailer,
        limiter=RateLimiter(settings),
    )


# At shutdown, how long the relay may take to hand the last events to the bus: long enough
# for any healthy bus, short enough not to hold up a deploy when the bus is away (clients
# resume what they missed from the log).
RELAY_FLUSH_S = 2.0
# At shutdown, how long mail already queued may take to go out: a code mailed just before a
# deploy should still arrive; a mail server that is away does not hold the deploy up.
MAIL_FLUSH_S = 5.0


@asynccontextmanager
async def command_services(settings: Settings) -> AsyncIterator[Services]:
    """The services for a command run beside the servers (`reverb users ...`): what it changes
    is published through the same bus, so running servers act on it (a disabled user's sockets
    close at once where REDIS_URL is set)."""
    services = build_services(settings)
    services.publisher.relay.start()
    try:
        yield services
    finally:
        await services.publisher.relay.close(RELAY_FLUSH_S)
        if services.redis is not None:
            await services.redis.aclose()
        await services.bus.close()
        await services.db.close()


DOCS = "/api/docs"
DOCS_STATIC = f"{DOCS}/static"
# The web client and the JavaScript module it is built on: files of the package, served as
# they are (no build step), under /web/ and, for the page itself, at /.
WEB_DIR = Path(__file__).parent / "web"


# The web client loads its scripts, styles and images from this server only and talks to its API
# and WebSocket only ('self' covers ws: and wss: of the same host); blob: and data: are the
# previews of images being uploaded and the page's empty icon. No inline script or style.
WEB_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def home() -> FileResponse:
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": WEB_POLICY},
    )


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        hub = Hub(services.bus, services.chats.log_between, sessions=services.auth.sessions)
        presence = services.presence
        app.state.realtime = Realtime(
            settings=settings,
            hub=hub,
            auth=services.auth,
            chats=services.chats,
            messages=services.messages,
            markers=services.markers,
            typing=TypingService(
                db=services.db, publisher=services.publisher, redis=services.redis
            ),
            presence=presence,
            limiter=services.limiter,
        )
        await hub.start()
        services.publisher.relay.start()
        await presence.start()
        services.mailer.start()
        flushing = asyncio.create_task(metrics.keep_flushing())
        try:
            yield
        finally:
            await services.recovery.close()
            await services.mailer.close(MAIL_FLUSH_S)
            await services.messages.close()  # its last sends still publish: bus and db stay up
            await services.markers.close()
            await presence.stop()
            await services.publisher.relay.close(RELAY_FLUSH_S)
            await hub.stop()
            if services.redis is not None:
                await services.redis.aclose()
            await services.bus.close()
            await services.db.close()
            flushing.cancel()
            await asyncio.wait([flushing])
            metrics.ended()

    # Swagger UI served from its own files under /api/docs/static (fastapi-offline): the
    # docs work without internet and fetch nothing from a third party.
    app = FastAPIOffline(
        title="Reverb",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url=DOCS,
        redoc_url=None,
        static_url=DOCS_STATIC,
        favicon_url=f"{DOCS_STATIC}/favicon.png",
    )
    app.add_api_route("/", home, include_in_schema=False, response_class=FileResponse)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    problems.install(app)
    # Structs referenced only by hand-written schema entries (`events.EncodedMessageView`,
    # `schemas.StoredEvent`): their components go into the document as well.
    structs.install(app, extra=(MessageView, *LOGGED_EVENTS))
    # FastAPI tries routes one by one, in this order, at a few microseconds each: the messages
    # routes (history, sends) are the hottest, and no other router's paths overlap theirs.
    for router in (
        messages.router,
        auth.router,
        users.router,
        chats.router,
        media.router,
        ops.router,
        gateway.router,
    ):
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
            # Bearer tokens, not cookies: browsers need no credentials mode.
            allow_credentials=False,
        )
    app.add_middleware(BodyLimit)
    docs = [p for p in (DOCS, app.swagger_ui_oauth2_redirect_url) if p]
    app.add_middleware(RequestContext, docs_paths=docs)
    return app


class SocketsFirst:
    """The app as the server runs it: `/ws` upgrades go straight to the gateway, everything
    else to the HTTP app. An open socket otherwise keeps the whole middleware and routing call
    chain alive, about a quarter of what each idle connection holds."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == gateway.WS_PATH:
            await gateway.serve_asgi(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)


def factory() -> SocketsFirst:
    """Entry point for uvicorn workers: each process reads the same environment."""
    settings = load_settings()
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    return SocketsFirst(create_app(settings))
