"""What an administrator does to accounts from the command line (`reverb users ...`)."""

from __future__ import annotations

from dataclasses import dataclass

from reverb.domain.users import User
from reverb.errors import ErrorCode, ReverbError
from reverb.services.auth import AuthService
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.types import utcnow


def _no_such_user(who: str) -> ReverbError:
    return ReverbError(
        ErrorCode.USER_NOT_FOUND, f"no user with the id, username or e-mail {who!r}", 404
    )


@dataclass(slots=True)
class AccountAdmin:
    db: Database
    auth: AuthService

    async def find(self, who: str) -> User:
        async with self.db.read() as conn:
            user = await user_store.find(conn, who)
        if user is None:
            raise _no_such_user(who)
        return user

    async def list_accounts(self, *, search: str | None, limit: int) -> list[User]:
        async with self.db.read() as conn:
            return await user_store.list_users(conn, search=search, limit=limit)

    async def set_disabled(self, who: str, *, disabled: bool) -> User:
        """Disabling ends every session at once (open sockets included); enabling lets the
        person log in again, with no session brought back."""
        async with self.db.transaction() as tx:
            user = await user_store.find(tx.conn, who, lock=True)
            if user is None:
                raise _no_such_user(who)
            if disabled and user.disabled_at is None:
                await self.auth.revoke_all(tx, user.id, disabled_at=utcnow())
            elif not disabled and user.disabled_at is not None:
                await user_store.update_user(
                    tx.conn, user.id, disabled_at=None, updated_at=utcnow()
                )
        return await self.find(user.id)

    async def set_password(self, who: str, password: str) -> User:
        """As a password change: every earlier session ends."""
        user = await self.find(who)
        password_hash = await self.auth.passwords.hash(password)
        async with self.db.transaction() as tx:
            await self.auth.revoke_all(tx, user.id, password_hash=password_hash)
        return user
