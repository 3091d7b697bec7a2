"""chat_events: an index on whom an event concerns, so a resume finds a user's removals at once

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_chat_events_user_id", "chat_events", ["user_id", "type"])


def downgrade() -> None:
    op.drop_index("ix_chat_events_user_id", table_name="chat_events")
