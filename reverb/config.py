"""Settings from the environment and a `.env` file, validated once at start-up."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# An HMAC key shorter than the hash output weakens the MAC (RFC 7518 §3.2).
MIN_JWT_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class ConfigError(Exception):
    """A setting that cannot work; the message says which and why."""


def async_database_url(raw: str) -> str:
    """Map the URLs people write (`sqlite:///x.db`, `postgresql://...`) onto the async drivers."""
    try:
        url: URL = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not a database URL: {exc}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            # Every pooled connection would get its own empty database.
            raise ConfigError("DATABASE_URL: in-memory SQLite is not supported; name a file")
        url = url.set(drivername="sqlite+reverb")  # reverb.storage.sqlite_driver
    elif backend in ("postgresql", "postgres"):
        query = dict(url.query)
        if "sslmode" in query:  # libpq spelling; asyncpg calls it `ssl`
            query["ssl"] = query.pop("sslmode")
        url = url.set(drivername="postgresql+asyncpg", query=query)
    else:
        raise ConfigError(
            f"DATABASE_URL: unsupported database {backend!r}; use sqlite:/// or postgresql://"
        )
    return url.render_as_string(hide_password=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    reverb_env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=1, le=65535)
    database_url: str = "sqlite:///./reverb.db"
    # Apply pending migrations at `reverb serve`. Unset: yes in development, no in production.
    auto_migrate: bool | None = None
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    # REDIS_URL names one node of a Redis Cluster: events go over sharded pub/sub (SPUBLISH and
    # SSUBSCRIBE), so each node carries only the traffic of the shards whose slots it owns.
    redis_cluster: bool = False

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "reverb"
    jwt_audience: str = "reverb"
    # Short access tokens bound how long a stolen one works; refresh tokens carry the session.
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=10)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    login_max_failures_per_account: int = Field(default=10, ge=1)
    login_max_failures_per_address: int = Field(default=50, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)

    # Rate limits, in the `limits` library's notation ("N per [M] second|minute|hour|day"),
    # over a sliding window; shared by every process through Redis when REDIS_URL is set.
    # Messages, per user, over REST and the WebSocket alike: a burst of 40, then 20 a second,
    # more than a person types and about what a client flushing its offline queue needs.
    rate_limit_messages: str = "40 per 2 seconds"
    # Every other write, per user (edits, deletions, reactions, uploads, chat, member and
    # profile changes, read markers over REST): two a second, sustained for a minute.
    rate_limit_writes: str = "120 per minute"
    # Every unauthenticated endpoint, per client address (register, login, refresh, logout,
    # token): a household or an office behind one address, not a script.
    rate_limit_anonymous: str = "60 per minute"
    # Auth attempts on /ws per client address: every client of an office reconnecting after a
    # deploy fits, a loop that authenticates without end does not.
    rate_limit_ws_auth: str = "120 per minute"

    # argon2-cffi's defaults (RFC 9106 "second recommended" profile): about 50 ms per hash.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    # WebSocket. Auth timeout and ping interval are the API contract's defaults.
    ws_auth_timeout_seconds: float = Field(default=10.0, gt=0)
    ws_ping_interval_seconds: float = Field(default=25.0, gt=0)
    ws_ping_timeout_seconds: float = Field(default=20.0, gt=0)
    # Events queued for one connection before it counts as too slow (close 4013). Big enough
    # for bursts in busy groups, small enough that a stalled client holds little memory.
    ws_queue_size: int = Field(default=1000, ge=1)
    # permessage-deflate. Off by default: chat frames are small, and each compressing socket
    # keeps its own zlib state (tens of KiB) and compresses every event once per connection,
    # where uncompressed the same frame bytes go to every member.
    ws_compression: bool = False
    # How long a crashed process's users stay "online" at most (shared presence, with Redis).
    presence_ttl_seconds: float = Field(default=60.0, ge=3)

    # Media: files under MEDIA_DIR; limits from the API contract.
    media_dir: Path = Path("./media")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_avatar_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    forwarded_allow_ips: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator(
        "rate_limit_messages", "rate_limit_writes", "rate_limit_anonymous", "rate_limit_ws_auth"
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '40 per 2 seconds': {exc}") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def production(self) -> bool:
        return self.reverb_env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        return async_database_url(self.database_url)

    @property
    def should_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else not self.production

    @property
    def secret(self) -> str:
        if self.jwt_secret is None:
            raise ConfigError("JWT_SECRET is not resolved; build settings with load_settings()")
        return self.jwt_secret.get_secret_value()


def _secret_file(settings: Settings) -> Path:
    """Where a development secret lives: beside the SQLite file, else in the working directory."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database:
        db = Path(url.database)
        return db.with_name(db.name + ".jwt-secret")
    return Path(".reverb-jwt-secret")


def _load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write aside, then link into place: several workers starting at once all end up reading
    # the one secret that won, never a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jwt-secret-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Read and check the settings; resolve the JWT secret. Raises ConfigError with the reason."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.sqlalchemy_url  # noqa: B018 -- validates DATABASE_URL now, not at first query
    if settings.redis_cluster and not settings.redis_url:
        raise ConfigError("REDIS_CLUSTER=true needs REDIS_URL (the address of one cluster node)")
    if settings.jwt_secret is not None:
        need = MIN_JWT_SECRET_BYTES[settings.jwt_algorithm]
        if len(settings.secret.encode()) < need:
            raise ConfigError(
                f"JWT_SECRET must be at least {need} bytes for {settings.jwt_algorithm} "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return settings
    if settings.production:
        raise ConfigError(
            "REVERB_ENV=production needs JWT_SECRET (at least 32 bytes); a generated development "
            "secret is refused in production so that every process signs with the same key"
        )
    secret = _load_or_create_secret(_secret_file(settings))
    return settings.model_copy(update={"jwt_secret": SecretStr(secret)})
