"""Table definitions (SQLAlchemy Core). Migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from reverb.storage.types import UTCDateTime

# Deterministic constraint names, so Alembic migrations can refer to them on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 32  # hex of a 128-bit id

users = Table(
    "users",
    metadata,
    Column("id", String(ID), primary_key=True),
    # Stored lower-cased, so the unique keys are case-insensitive on every database.
    Column("username", String(32), nullable=False, unique=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("display_name", String(64), nullable=False),
    Column("bio", Text, nullable=False, server_default=""),
    Column("password_hash", String(255), nullable=False),
    Column("avatar_key", String(255), nullable=True),
    # Bumped by a password change: access tokens carry it, so older ones stop working at once.
    Column("session_version", Integer, nullable=False, server_default="0"),
    Column("last_seen_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # Every token descended from one login shares a family; reuse revokes the family.
    Column("family_id", String(ID), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_refresh_tokens_user_id", "user_id"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_key", String(400), nullable=False),
    Column("address", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_login_failures_account", "account_key", "created_at"),
    Index("ix_login_failures_address", "address", "created_at"),
)
