"""Deleting an account: the person goes, their messages stay (shown from "Deleted user")."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reverb.domain.users import User
from reverb.errors import ReverbError
from reverb.services.auth import AuthService
from reverb.services.chats import ChatService
from reverb.services.media import MediaService
from reverb.services.passwords import NO_PASSWORD
from reverb.storage import chats as chat_store
from reverb.storage import codes as code_store
from reverb.storage import users as user_store
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

DELETED_NAME = "Deleted user"


@dataclass(slots=True)
class AccountDeletion:
    auth: AuthService
    chats: ChatService
    media: MediaService

    async def delete(self, *, user: User, password: str, address: str) -> None:
        await self.auth.confirm_password(user=user, password=password, address=address)
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            current = await user_store.get(tx.conn, user.id, lock=True)
            if current is None:
                return
            groups = await chat_store.group_ids(tx.conn, user.id)
            await code_store.remove_all(tx.conn, user.id)
            # One write: every session ends (sockets close) as the profile goes. The e-mail
            # becomes an address that cannot exist (RFC 2606), so the real one is free again;
            # "deleted-" cannot be a username anyone chose (no "-" allowed).
            await self.auth.revoke_all(
                tx,
                user.id,
                username=f"deleted-{user.id[-24:]}",  # the random end: 32 characters in all
                email=f"deleted-{user.id}@deleted.invalid",
                display_name=DELETED_NAME,
                bio="",
                avatar_key=None,
                password_hash=NO_PASSWORD,
                disabled_at=now,
                email_verified_at=None,
            )
        # Each group is left as by DELETE /api/chats/{id}/members/{me}: members hear of it and
        # an owner hands the group on. Direct chats stay, their peer talking to "Deleted user".
        for chat_id in groups:
            try:
                await self.chats.remove_member(me=user, chat_id=chat_id, user_id=user.id)
            except ReverbError as exc:  # left meanwhile, or the chat is gone
                log.info("account deletion: %s while leaving a group", exc.code)
        await self.media.discard_uploads_of(user.id, avatar_key=current.avatar_key)
