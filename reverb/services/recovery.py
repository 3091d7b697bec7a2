"""Proving an e-mail address and resetting a forgotten password, with mailed codes."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

from reverb.domain.users import IssuedTokens, User
from reverb.errors import ErrorCode, ReverbError
from reverb.services.auth import AuthService
from reverb.services.email_codes import EmailCodes
from reverb.storage import users as user_store
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

# forgot-password requests being worked on at once, past which new ones are refused (429):
# each costs a read and maybe a write, off the request, and nothing else bounds them.
MAX_PENDING_FORGOTTEN = 100


def invalid_code() -> ReverbError:
    return ReverbError(ErrorCode.INVALID_CODE, "the code is wrong, used or expired", 400)


def _too_soon(wait_s: float) -> ReverbError:
    return ReverbError(
        ErrorCode.RATE_LIMITED,
        "a code was sent moments ago; wait before asking for another",
        429,
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


@dataclass(slots=True)
class Recovery:
    auth: AuthService
    codes: EmailCodes
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    async def verify_email(self, *, user: User, code: str) -> User:
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            ok = await self.codes.use(tx, user.id, "verify", code, now=now)
            if ok:
                await user_store.update_user(tx.conn, user.id, email_verified_at=now)
                # Token checks here read the row again (others within the cache's age).
                tx.after_commit(lambda: self.auth.sessions.forget_user(user.id))
        if not ok:
            raise invalid_code()
        async with self.auth.db.read() as conn:
            fresh = await user_store.get(conn, user.id)
        assert fresh is not None
        return fresh

    async def resend_verification(self, *, user: User) -> None:
        if user.email_verified_at is not None:
            return  # nothing to prove; answered like a sent code
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            next_at = await self.codes.issue(tx, user, "verify", now=now)
        if next_at is not None:
            raise _too_soon((next_at - now).total_seconds())

    def forgot_password(self, *, email: str) -> None:
        """Mail a reset code if the address has an account. Returns at once, before knowing:
        the answer and its timing are the same whether or not there is an account."""
        if len(self._pending) >= MAX_PENDING_FORGOTTEN:
            raise _too_soon(1)
        task = asyncio.get_running_loop().create_task(self._forgot(email.strip().lower()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _forgot(self, email: str) -> None:
        try:
            now = utcnow()
            async with self.auth.db.transaction() as tx:
                user = await user_store.find_by_email(tx.conn, email)
                if user is not None and user.disabled_at is None:
                    # Too soon after the last code: nothing is sent, and nobody is told.
                    await self.codes.issue(tx, user, "reset", now=now)
        except Exception as exc:  # nobody waits for this answer: the log is where it goes
            log.warning("forgot-password: no reset code issued: %s", type(exc).__name__)

    async def reset_password(self, *, email: str, code: str, new_password: str) -> IssuedTokens:
        """Set a new password with a mailed code; every earlier session ends (sockets too)."""
        password_hash = await self.auth.passwords.hash(new_password)
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            user = await user_store.find_by_email(tx.conn, email.strip().lower())
            ok = user is not None and await self.codes.use(tx, user.id, "reset", code, now=now)
            if ok and user is not None:
                # The code came to the address: that proves it as well.
                verified = user.email_verified_at or now
                await self.auth.revoke_all(
                    tx, user.id, password_hash=password_hash, email_verified_at=verified
                )
                renewed = await user_store.get(tx.conn, user.id)
                assert renewed is not None
                issued = await self.auth.issue(tx, renewed, family_id=None, now=now)
        if not ok:
            raise invalid_code()
        return issued

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
