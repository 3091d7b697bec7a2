"""Settings from the environment and a `.env` file, validated once at start-up."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
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


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


# scheme: (TLS from the first byte, STARTTLS required, default port)
_SMTP_SCHEMES = {
    "smtp": (False, False, 25),
    "smtp+starttls": (False, True, 587),
    "smtps": (True, False, 465),
}


def smtp_server(url: str) -> SmtpServer:
    """`smtp://[user:pass@]host[:port]` (no TLS), `smtp+starttls://…` (STARTTLS required) or
    `smtps://…` (TLS from the first byte); user and password percent-encoded."""
    parts = urlsplit(url)
    if parts.scheme not in _SMTP_SCHEMES or not parts.hostname:
        raise ConfigError("SMTP_URL must be smtp://, smtp+starttls:// or smtps:// and a host")
    implicit, starttls, default_port = _SMTP_SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigError("SMTP_URL: the port is not a number from 0 to 65535") from None
    return SmtpServer(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


# GitHub's OAuth 2 endpoints and user API, for a provider without an issuer.
GITHUB_URLS = {
    "authorize_url": "https://github.com/login/oauth/authorize",
    "token_url": "https://github.com/login/oauth/access_token",
    "api_url": "https://api.github.com",
}


@dataclass(frozen=True, slots=True)
class GitHubUrls:
    authorize: str
    token: str
    api: str


class OAuthProvider(BaseModel):
    """A social or OpenID Connect login provider (one entry of OAUTH_PROVIDERS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    client_id: Annotated[str, Field(min_length=1, max_length=512)]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=512)]
    # OpenID Connect by discovery when set; "google" defaults to Google's; "github" without
    # one is GitHub's OAuth 2 with its user API.
    issuer: str | None = None
    display_name: str | None = None
    # GitHub's OAuth 2 at another address (GitHub Enterprise Server: https://HOST/login/oauth/
    # authorize, https://HOST/login/oauth/access_token, https://HOST/api/v3): all three or none.
    authorize_url: str | None = None
    token_url: str | None = None
    api_url: str | None = None

    @property
    def openid_issuer(self) -> str | None:
        if self.issuer:
            return self.issuer.rstrip("/")
        return "https://accounts.google.com" if self.name == "google" else None

    @property
    def github(self) -> GitHubUrls | None:
        """GitHub's OAuth 2 endpoints, for a provider that is GitHub (else None)."""
        given = (self.authorize_url, self.token_url, self.api_url)
        if self.openid_issuer is not None or (self.name != "github" and given == (None,) * 3):
            return None
        urls = [url or GITHUB_URLS[f] for url, f in zip(given, GITHUB_URLS, strict=True)]
        return GitHubUrls(urls[0], urls[1], urls[2].rstrip("/"))

    @property
    def title(self) -> str:
        return self.display_name or self.name.capitalize()


def _check_provider(provider: OAuthProvider) -> None:
    given = {f: getattr(provider, f) for f in GITHUB_URLS if getattr(provider, f) is not None}
    if given and (provider.openid_issuer is not None or len(given) != len(GITHUB_URLS)):
        raise ConfigError(
            f"OAUTH_PROVIDERS: {provider.name!r}: authorize_url, token_url and api_url go "
            "together, and only without an issuer (they are GitHub's OAuth 2)"
        )
    for what, url in given.items():
        _check_secure(provider, what, url)
    issuer = provider.openid_issuer
    if issuer is not None:
        _check_secure(provider, "issuer", issuer)
    elif provider.github is None:
        raise ConfigError(
            f"OAUTH_PROVIDERS: {provider.name!r} needs an issuer (OpenID Connect discovery)"
        )


def _check_secure(provider: OAuthProvider, what: str, url: str) -> None:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    # Identities come from what these answer: only TLS makes the answers the provider's own.
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(
            f"OAUTH_PROVIDERS: the {what} of {provider.name!r} must be https:// (http only on a "
            "loopback address)"
        )


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
    # Uploads (files and avatars), per user, besides the writes above: each costs a decode and
    # disk, so fewer of them; a person sharing a batch of photos fits.
    rate_limit_uploads: str = "30 per minute"

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
    # On SIGTERM, how long requests and sockets may take to finish (each socket answers what it
    # has read and closes with 1012 within about 5 s) before what is left is cancelled.
    shutdown_timeout_seconds: int = Field(default=30, ge=1)
    # How long a crashed process's users stay "online" at most (shared presence, with Redis).
    presence_ttl_seconds: float = Field(default=60.0, ge=3)

    # Media: files under MEDIA_DIR, or in an S3-compatible bucket that every replica shares
    # (MEDIA_STORE=s3; uploads are still written and checked under MEDIA_DIR first). Limits
    # from the API contract.
    media_dir: Path = Path("./media")
    media_store: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    # Unset: AWS S3 itself. Set for MinIO, Ceph, R2 and other S3-compatible stores.
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Unset: the standard AWS chain (AWS_ACCESS_KEY_ID and friends, web identity, container
    # and instance credentials).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Keys go under this folder of the bucket, so one bucket can hold several deployments.
    s3_prefix: str = ""
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_avatar_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # The memory one image's decoded pixels may take (width x height x bytes a pixel, all
    # frames an animation holds at once), checked from the header before decoding. The default
    # lets any 8-bit image within MAX_IMAGE_PIXELS through (40 MP at Pillow's 4 bytes a pixel);
    # 16-bit and float images and big animations meet it first.
    image_decode_budget_bytes: int = Field(default=160_000_000, ge=1)
    # Images decoded at once per process. Decoding is CPU-bound (one core each) and holds up
    # to the budget above in memory, so two keep a second upload from waiting behind a slow
    # one while bounding decode memory near 2 x the budget.
    image_decode_concurrency: int = Field(default=2, ge=1)

    # Mail (verification and password-reset codes). Unset: each mail is written to the log.
    smtp_url: str | None = None
    mail_from: str = "Reverb <no-reply@localhost>"
    # The contract's default: long enough to switch to the mailbox and back.
    email_code_ttl_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    # Unverified accounts may log in but get 403 email_unverified from chats, messages, media.
    require_email_verification: bool = False

    # Social and OpenID Connect login: a JSON list of providers, the exact URIs the app may be
    # sent back to, and the address people reach Reverb at (the providers call back there).
    oauth_providers: list[OAuthProvider] = Field(default_factory=list)
    oauth_redirect_uris: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str | None = None

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    forwarded_allow_ips: str = "127.0.0.1"
    # Set: /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (for a server whose
    # port is reachable by more than the scraper).
    metrics_token: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("oauth_redirect_uris", mode="before")
    @classmethod
    def _split_uris(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator(
        "rate_limit_messages",
        "rate_limit_writes",
        "rate_limit_anonymous",
        "rate_limit_ws_auth",
        "rate_limit_uploads",
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
    def smtp(self) -> SmtpServer | None:
        return smtp_server(self.smtp_url) if self.smtp_url else None

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


def development_secret_file(settings: Settings) -> Path:
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


def _check_media_store(settings: Settings) -> None:
    if settings.media_store != "s3":
        return
    if not settings.s3_bucket:
        raise ConfigError("MEDIA_STORE=s3 needs S3_BUCKET (the bucket media are stored in)")
    if settings.s3_endpoint_url:
        parts = urlsplit(settings.s3_endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("S3_ENDPOINT_URL must be http:// or https:// and a host")
    if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
        raise ConfigError(
            "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together; set both, or neither to use "
            "the standard AWS credentials (AWS_* variables, instance or container roles)"
        )
    folder = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # no "." or ".." among them
    if settings.s3_prefix and not re.fullmatch(rf"{folder}(/{folder})*", settings.s3_prefix):
        raise ConfigError("S3_PREFIX must be a folder path such as 'reverb' or 'prod/media'")


def _describe(exc: ValidationError) -> str:
    """Each refused setting by the name it is set with, what is wrong and the value given."""
    parts = []
    for error in exc.errors(include_url=False):
        name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
        given = error.get("input")
        # Secrets and URLs (which may hold a password) are named, never echoed into a log.
        private = any(word in name for word in ("SECRET", "TOKEN", "PASSWORD", "URL"))
        plain = isinstance(given, str | int | float) and not private
        shown = f" (got {given!r})" if plain else ""
        parts.append(f"{name}: {error['msg']}{shown}")
    return "; ".join(parts)


def read_settings(**overrides: object) -> Settings:
    """Read and check the settings, leaving a missing JWT secret unresolved (for commands that
    copy the secret file rather than use it). Raises ConfigError with the reason."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    settings.sqlalchemy_url  # noqa: B018 -- validates DATABASE_URL now, not at first query
    settings.smtp  # noqa: B018 -- and SMTP_URL
    names = [p.name for p in settings.oauth_providers]
    if len(set(names)) != len(names):
        raise ConfigError("OAUTH_PROVIDERS: each provider needs a name of its own")
    for provider in settings.oauth_providers:
        _check_provider(provider)
    _check_media_store(settings)
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


def load_settings(**overrides: object) -> Settings:
    """Read and check the settings and resolve the JWT secret. Raises ConfigError."""
    settings = read_settings(**overrides)
    if settings.jwt_secret is not None:
        return settings
    if settings.production:
        raise ConfigError(
            "REVERB_ENV=production needs JWT_SECRET (at least 32 bytes); a generated development "
            "secret is refused in production so that every process signs with the same key"
        )
    secret = _load_or_create_secret(development_secret_file(settings))
    return settings.model_copy(update={"jwt_secret": SecretStr(secret)})
