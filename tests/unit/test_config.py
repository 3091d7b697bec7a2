"""Settings: database URLs, the JWT secret rules, list parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reverb.config import ConfigError, async_database_url, load_settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./reverb.db", "sqlite+reverb:///./reverb.db"),
        ("sqlite:////var/lib/reverb.db", "sqlite+reverb:////var/lib/reverb.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+reverb:///x.db"),
        ("postgresql://u:p@db/chat", "postgresql+asyncpg://u:p@db/chat"),
        ("postgres://u@db:5433/chat", "postgresql+asyncpg://u@db:5433/chat"),
        ("postgresql+psycopg://u@db/chat", "postgresql+asyncpg://u@db/chat"),
        ("postgresql://u@db/chat?sslmode=require", "postgresql+asyncpg://u@db/chat?ssl=require"),
    ],
)
def test_database_urls_map_to_async_drivers(given: str, expected: str) -> None:
    assert async_database_url(given) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        async_database_url(url)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key in {"JWT_SECRET", "REVERB_ENV", "DATABASE_URL", "CORS_ORIGINS", "PORT"}:
            monkeypatch.delenv(key)
    return tmp_path


def test_development_secret_is_generated_once_beside_the_database(in_tmp: Path) -> None:
    first = load_settings(_env_file=None)
    secret_file = in_tmp / "reverb.db.jwt-secret"
    assert secret_file.exists()
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert len(first.secret) >= 32
    assert load_settings(_env_file=None).secret == first.secret


def test_production_refuses_to_start_without_a_secret(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(_env_file=None, reverb_env="production")
    assert not (in_tmp / "reverb.db.jwt-secret").exists()


def test_short_secrets_are_refused(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings(_env_file=None, reverb_env="production", jwt_secret="too-short")
    with pytest.raises(ConfigError, match="at least 64 bytes"):
        load_settings(_env_file=None, jwt_secret="s" * 40, jwt_algorithm="HS512")
    ok = load_settings(_env_file=None, reverb_env="production", jwt_secret="s" * 32)
    assert ok.production and ok.secret == "s" * 32


def test_environment_and_dotenv(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / ".env").write_text("PORT=6001\nCORS_ORIGINS=https://a.example/, https://b.example\n")
    s = load_settings()
    assert s.port == 6001
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("PORT", "6002")
    assert load_settings().port == 6002
    assert load_settings().should_auto_migrate
    assert not load_settings(reverb_env="production", jwt_secret="s" * 32).should_auto_migrate


def test_redis_cluster_needs_a_redis_url(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="REDIS_CLUSTER=true needs REDIS_URL"):
        load_settings(_env_file=None, redis_cluster=True)
    settings = load_settings(
        _env_file=None, redis_cluster="true", redis_url="redis://127.0.0.1:7000"
    )
    assert settings.redis_cluster is True
    assert load_settings(_env_file=None).redis_cluster is False


def test_refused_values_are_named_as_they_are_set(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(port="abc", ws_queue_size=-5)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("PORT: Input should be a valid integer")
    assert "(got 'abc')" in message and "WS_QUEUE_SIZE: " in message and "(got -5)" in message


def test_a_refused_secret_is_named_but_not_shown(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(jwt_secret=987654321987654321)
    assert "JWT_SECRET" in str(refused.value) and "987654321" not in str(refused.value)


def provider(**fields: str) -> list[dict[str, str]]:
    return [{"client_id": "id", "client_secret": "secret", **fields}]


def test_github_endpoints_default_or_given(in_tmp: Path) -> None:
    (plain,) = load_settings(
        _env_file=None, oauth_providers=provider(name="github")
    ).oauth_providers
    assert plain.github is not None and plain.github.api == "https://api.github.com"
    ghe = "https://git.example.com"
    (own,) = load_settings(
        _env_file=None,
        oauth_providers=provider(
            name="work",
            authorize_url=f"{ghe}/login/oauth/authorize",
            token_url=f"{ghe}/login/oauth/access_token",
            api_url=f"{ghe}/api/v3/",
        ),
    ).oauth_providers
    assert own.github is not None and own.openid_issuer is None
    assert (own.github.authorize, own.github.api) == (
        f"{ghe}/login/oauth/authorize",
        f"{ghe}/api/v3",
    )


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"name": "work"}, "needs an issuer"),
        ({"name": "github", "api_url": "https://x.example"}, "go together"),
        (
            {
                "name": "google",
                "authorize_url": "https://x.example/a",
                "token_url": "https://x.example/t",
                "api_url": "https://x.example",
            },
            "only without an issuer",
        ),
        (
            {
                "name": "github",
                "authorize_url": "http://git.example.com/a",
                "token_url": "http://127.0.0.1:9/t",
                "api_url": "http://[::1]:9",
            },
            "authorize_url of 'github' must be https://",
        ),
        ({"name": "sso", "issuer": "http://sso.example.com"}, "issuer of 'sso' must be https://"),
    ],
)
def test_provider_addresses_are_checked(
    in_tmp: Path, fields: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_settings(_env_file=None, oauth_providers=provider(**fields))


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({}, "MEDIA_STORE=s3 needs S3_BUCKET"),
        ({"s3_bucket": "b", "s3_endpoint_url": "minio:9000"}, "S3_ENDPOINT_URL must be http"),
        ({"s3_bucket": "b", "s3_endpoint_url": "ftp://minio"}, "S3_ENDPOINT_URL must be http"),
        ({"s3_bucket": "b", "s3_access_key_id": "k"}, "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"),
        ({"s3_bucket": "b", "s3_secret_access_key": "s"}, "S3_ACCESS_KEY_ID and S3_SECRET"),
        ({"s3_bucket": "b", "s3_prefix": "/abs"}, "S3_PREFIX must be a folder path"),
        ({"s3_bucket": "b", "s3_prefix": "a/../b"}, "S3_PREFIX must be a folder path"),
    ],
)
def test_s3_media_settings_are_checked_at_start(
    in_tmp: Path, given: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ConfigError, match=refusal) as refused:
        load_settings(_env_file=None, media_store="s3", **given)
    assert "\n" not in str(refused.value)


def test_s3_media_settings_that_work(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="MEDIA_STORE: Input should be 'local' or 's3'"):
        load_settings(_env_file=None, media_store="ftp")
    aws = load_settings(_env_file=None, media_store="s3", s3_bucket="media")
    assert (aws.s3_endpoint_url, aws.s3_access_key_id) == (None, None)  # the AWS chain
    minio = load_settings(
        _env_file=None,
        media_store="s3",
        s3_bucket="media",
        s3_endpoint_url="http://minio:9000",
        s3_access_key_id="key",
        s3_secret_access_key="secret",
        s3_prefix="prod/reverb",
    )
    assert minio.s3_prefix == "prod/reverb"
