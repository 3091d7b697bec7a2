"""Profiles and user search."""

from __future__ import annotations

from dataclasses import dataclass, field

from reverb import ids
from reverb.domain.users import User
from reverb.errors import ErrorCode, not_found
from reverb.services.access_cache import AccessCache
from reverb.storage import users as user_store
from reverb.storage.db import Database
from reverb.storage.types import utcnow


@dataclass(slots=True)
class UserService:
    db: Database
    # The authenticated user of a request comes from here: told of profile changes.
    sessions: AccessCache = field(default_factory=AccessCache)

    async def get(self, user_id: str) -> User:
        if not ids.is_id(user_id):
            raise not_found(ErrorCode.USER_NOT_FOUND, "user")
        async with self.db.read() as conn:
            user = await user_store.get(conn, user_id)
        if user is None:
            raise not_found(ErrorCode.USER_NOT_FOUND, "user")
        return user

    async def update_profile(
        self, *, user: User, display_name: str | None, bio: str | None
    ) -> User:
        values: dict[str, object] = {}
        if display_name is not None:
            values["display_name"] = display_name
        if bio is not None:
            values["bio"] = bio
        if not values:
            return await self.get(user.id)  # `user` may be the cached one: answer fresh
        async with self.db.transaction() as tx:
            await user_store.update_user(tx.conn, user.id, updated_at=utcnow(), **values)
            updated = await user_store.get(tx.conn, user.id)
        self.sessions.forget_user(user.id)
        assert updated is not None
        return updated

    async def search(
        self, *, caller: User, query: str, after: str | None, limit: int
    ) -> tuple[list[User], str | None]:
        """A page of matches and the cursor of the next page (None on the last)."""
        async with self.db.read() as conn:
            found = await user_store.search(
                conn, query=query, exclude_id=caller.id, after=after, limit=limit + 1
            )
        more = len(found) > limit
        page = found[:limit]
        return page, (page[-1].username if more else None)
