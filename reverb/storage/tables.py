"""Table definitions (SQLAlchemy Core). Migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
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
    # Set by an administrator (`reverb users disable`): no login until it is cleared.
    Column("disabled_at", UTCDateTime, nullable=True),
    # When the owner proved the address with a mailed code.
    Column("email_verified_at", UTCDateTime, nullable=True),
)

# The one live code per user and purpose ("verify", "reset"), stored as an HMAC: a 6-digit code
# would be found from a plain hash in a million tries.
email_codes = Table(
    "email_codes",
    metadata,
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("purpose", String(16), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# A login through a provider: (provider, subject) belongs to one account.
identities = Table(
    "identities",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_identities_user_id", "user_id"),
)

# A login sent to a provider and not yet back: what the callback must check it against.
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(64), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# What the callback hands the app instead of tokens: traded once for a session.
login_codes = Table(
    "login_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
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

chats = Table(
    "chats",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("type", String(10), nullable=False),
    Column("name", String(100), nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    # "<smaller user id>:<larger user id>" for direct chats: the unique key that makes
    # access-or-create give one chat per pair even when both users ask at once.
    Column("direct_key", String(2 * ID + 1), nullable=True, unique=True),
    # The chat's event log head: the seq of its newest event. Allocating a seq updates this row,
    # whose lock then orders concurrent writers of one chat by commit.
    Column("last_seq", Integer, nullable=False, server_default="0"),
    Column("last_message_id", String(ID), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_activity_at", UTCDateTime, nullable=False),
)

chat_members = Table(
    "chat_members",
    metadata,
    Column("chat_id", String(ID), ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(10), nullable=False),
    Column("joined_at", UTCDateTime, nullable=False),
    Column("last_read_seq", Integer, nullable=False, server_default="0"),
    Column("last_delivered_seq", Integer, nullable=False, server_default="0"),
    Index("ix_chat_members_user_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    # An integer key for the full-text index (SQLite FTS5 needs a stable integer rowid).
    Column(
        "pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(ID), nullable=False, unique=True),
    Column("chat_id", String(ID), ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("sender_id", String(ID), ForeignKey("users.id"), nullable=False),
    Column("content", Text, nullable=False),
    Column("client_id", String(128), nullable=True),
    Column("reply_to_id", String(ID), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("edited_at", UTCDateTime, nullable=True),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("chat_id", "seq", name="uq_messages_chat_seq"),
    # Durable idempotency for sends: NULL client ids never collide.
    # A user's own messages, in order, for their data export.
    Index("ix_messages_sender_id", "sender_id", "id"),
    UniqueConstraint("chat_id", "sender_id", "client_id", name="uq_messages_chat_sender_client"),
)

reactions = Table(
    "reactions",
    metadata,
    Column(
        "message_id", String(ID), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("emoji", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

chat_events = Table(
    "chat_events",
    metadata,
    Column("chat_id", String(ID), ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False),
    # The event exactly as it was delivered live (JSON), so a replay sends the same bytes.
    Column("data", Text, nullable=False),
    # Whom a membership event concerns: lets a resume find "you were removed" quickly.
    Column("user_id", String(ID), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # A resume reads the user's removals in one look-up, whatever chat ids the client names.
    Index("ix_chat_events_user_id", "user_id", "type"),
)

media = Table(
    "media",
    metadata,
    # 128 random bits (not time-ordered): the id is the capability that grants access to the file.
    Column("id", String(ID), primary_key=True),
    Column("uploader_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(ID), ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(127), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("has_thumbnail", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_media_message_id", "message_id"),
    Index("ix_media_unattached", "message_id", "created_at"),
)
