"""docs/schema.md, made from the tables themselves: an entity-relationship diagram (Mermaid)
and a note per table on what it holds and which migration made it.

    python -m reverb.storage.diagram > docs/schema.md

A test compares the committed file with what this prints, so the picture cannot drift from
the tables.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sqlalchemy import Column, Table, UniqueConstraint

from reverb.storage.tables import metadata

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

# What each table holds, in a line. A new table without a note fails the test.
NOTES = {
    "users": "Accounts: login names, the Argon2id hash, profile, the session version that "
    "ends every access token at once, and when the account was disabled or its e-mail proven.",
    "refresh_tokens": "Refresh tokens as SHA-256 hashes, in families (one per login) for "
    "rotation and reuse detection.",
    "login_failures": "Failed logins per account and per address, for the login rate limit.",
    "email_codes": "The one live mailed code per user and purpose (verify, reset), as an HMAC, "
    "with its tries and expiry.",
    "identities": "Provider logins: (provider, subject) belongs to one account.",
    "oauth_states": "Provider logins under way: state, PKCE verifier, nonce and where the app "
    "wants the browser back.",
    "login_codes": "One-time codes the provider callback hands the app, traded for a session "
    "within 60 s.",
    "chats": "Direct chats and groups; `last_seq` is the head of the chat's event log, whose "
    "row lock orders its writers.",
    "chat_members": "Who is in which chat, with role and read and delivered positions.",
    "messages": "Messages with their per-chat `seq`; edits and deletions in place.",
    "reactions": "One row per user, message and emoji.",
    "chat_events": "Each chat's event log: every logged event as the JSON that was delivered, "
    "so a replay gives the same bytes.",
    "media": "Uploaded files: who uploaded them, the message they belong to once attached, "
    "and what an image measures.",
}


def _created_by() -> dict[str, str]:
    """Table name -> the migration that created it (its file's first docstring line)."""
    made: dict[str, str] = {}
    for path in sorted(MIGRATIONS.glob("*.py")):
        text = path.read_text()
        title = text.split('"""', 2)[1].strip().splitlines()[0]
        for name in re.findall(r'create_table\(\s*"([a-z_]+)"', text):
            made.setdefault(name, f"`{path.stem}` ({title})")
    return made


def _type(column: Column[object]) -> str:
    name = type(column.type).__name__
    return {"UTCDateTime": "timestamp", "String": "string", "Text": "text"}.get(name, name.lower())


def _key(table: Table, column: Column[object]) -> str:
    unique = column.unique or any(
        isinstance(c, UniqueConstraint) and list(c.columns.keys()) == [column.name]
        for c in table.constraints
    )
    keys = [
        k
        for k, on in (("PK", column.primary_key), ("FK", column.foreign_keys), ("UK", unique))
        if on
    ]
    return ", ".join(keys)


def render() -> str:
    tables = sorted(metadata.tables.values(), key=lambda t: t.name)
    lines = ["erDiagram"]
    for table in tables:
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            key = _key(table, column)
            lines.append(f"        {_type(column)} {column.name}{' ' + key if key else ''}")
        lines.append("    }")
    for table in tables:
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            target = fk.column.table.name
            optional = "o" if fk.parent.nullable else "|"
            lines.append(f'    {target} ||--{optional}{{ {table.name} : "{fk.parent.name}"}}')
    made = _created_by()
    notes = [
        f"- **{t.name}**: {NOTES[t.name]} Made by {made.get(t.name, 'no migration')}."
        for t in tables
    ]
    return "\n".join(
        [
            "# The database schema",
            "",
            "Generated from the SQLAlchemy tables (`reverb/storage/tables.py`) by",
            "`python -m reverb.storage.diagram > docs/schema.md`; a test fails when this file",
            "no longer matches them. Migrations are in `reverb/storage/migrations/versions/`.",
            "",
            "```mermaid",
            *lines,
            "```",
            "",
            "## The tables",
            "",
            *notes,
            "",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(render())
