"""Registration, login, token refresh and revocation, password changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb import ids
from reverb.config import Settings
from reverb.domain.events import Envelope, SessionRevoked, encode
from reverb.domain.users import IssuedTokens, User
from reverb.errors import ErrorCode, ReverbError, conflict
from reverb.metrics import ACCESS_USER_READS, LOGINS
from reverb.services.access_cache import AccessCache
from reverb.services.email_codes import EmailCodes
from reverb.services.login_limits import LoginLimiter
from reverb.services.passwords import NO_PASSWORD, Passwords
from reverb.services.publish import Publisher
from reverb.services.tokens import (
    AccessTokens,
    hash_refresh_token,
    invalid_token,
    new_refresh_token,
)
from reverb.storage import tokens as token_store
from reverb.storage import users as user_store
from reverb.storage.db import Database, Tx
from reverb.storage.types import utcnow

INVALID_CREDENTIALS = "the login or the password is wrong"
T = TypeVar("T")


def _bad_credentials(status: int = 401) -> ReverbError:
    return ReverbError(ErrorCode.INVALID_CREDENTIALS, INVALID_CREDENTIALS, status)


def _account_key(user: User | None, login: str) -> str:
    # Unknown logins are counted too, under their own spelling, so a 429 does not reveal
    # whether an account exists.
    return f"user:{user.id}" if user else f"login:{login}"


@dataclass(slots=True)
class AuthService:
    db: Database
    settings: Settings
    passwords: Passwords
    access: AccessTokens
    limiter: LoginLimiter
    # Told when a user's sessions end, so their open sockets close on every process.
    publisher: Publisher | None = None
    # Shared with whatever else changes a user's row (profiles): see `access_cache`.
    sessions: AccessCache = field(default_factory=AccessCache)
    # Mails a new account its verification code.
    codes: EmailCodes | None = None

    async def issue(
        self, tx: Tx, user: User, *, family_id: str | None, now: datetime
    ) -> IssuedTokens:
        raw, digest = new_refresh_token()
        await token_store.insert_refresh(
            tx.conn,
            id=ids.new_id(),
            user_id=user.id,
            family_id=family_id or ids.new_id(),
            token_hash=digest,
            now=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
        )
        return IssuedTokens(
            user=user,
            access_token=self.access.issue(user, now),
            refresh_token=raw,
            expires_in=self.access.ttl,
        )

    async def register(
        self, *, username: str, email: str, password: str, display_name: str | None
    ) -> IssuedTokens:
        async def log_in(tx: Tx, user: User) -> IssuedTokens:
            if self.codes is not None:
                await self.codes.issue(tx, user, "verify", now=user.created_at)
            return await self.issue(tx, user, family_id=None, now=user.created_at)

        return await self.create(username, email, password, display_name, then=log_in)

    async def create_account(
        self, *, username: str, email: str, password: str, display_name: str | None
    ) -> User:
        """A new account without a session (the admin CLI's; `register` also logs it in)."""

        async def done(_tx: Tx, user: User) -> User:
            return user

        return await self.create(username, email, password, display_name, then=done)

    async def create(
        self,
        username: str,
        email: str,
        password: str | None,
        display_name: str | None,
        *,
        then: Callable[[Tx, User], Awaitable[T]],
        **values: object,
    ) -> T:
        """A new account (no password: one that logs in through a provider only), then
        `then` in the same transaction."""
        # Checked and hashed before the transaction: a hash takes tens of milliseconds, too long
        # to hold SQLite's one writer.
        async with self.db.read() as conn:
            await self._check_free(conn, username=username, email=email)
        password_hash = await self.passwords.hash(password) if password else NO_PASSWORD
        now = utcnow()
        user_id = ids.new_id()
        try:
            async with self.db.transaction() as tx:
                await user_store.insert_user(
                    tx.conn,
                    id=user_id,
                    username=username,
                    email=email,
                    display_name=display_name or username,
                    bio="",
                    password_hash=password_hash,
                    session_version=0,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                user = await user_store.get(tx.conn, user_id)
                assert user is not None
                return await then(tx, user)
        except IntegrityError:
            # Lost a race with a concurrent registration of the same name or email.
            async with self.db.read() as conn:
                await self._check_free(conn, username=username, email=email)
            raise

    async def _check_free(self, conn: AsyncConnection, *, username: str, email: str) -> None:
        username_taken, email_taken = await user_store.taken(conn, username=username, email=email)
        if username_taken:
            raise conflict(ErrorCode.USERNAME_TAKEN, "that username is taken")
        if email_taken:
            raise conflict(ErrorCode.EMAIL_TAKEN, "an account with that email exists")

    async def login(self, *, login: str, password: str, address: str) -> IssuedTokens:
        login = login.strip().lower()
        now = utcnow()
        async with self.db.read() as conn:
            found = await user_store.get_with_hash_by_login(conn, login)
            user = found[0] if found else None
            key = _account_key(user, login)
            await self.limiter.check(conn, account_key=key, address=address, now=now)
        ok = await self.passwords.verify(found[1] if found else None, password)
        if not ok or user is None:
            async with self.db.transaction() as tx:
                await self.limiter.record_failure(
                    tx.conn, account_key=key, address=address, now=now
                )
            LOGINS.labels("failure").inc()
            raise _bad_credentials()
        assert found is not None
        if user.disabled_at is not None:
            # Said only to whoever knows the password, so it tells a guesser nothing.
            raise ReverbError(
                ErrorCode.ACCOUNT_DISABLED, "this account is disabled; ask an administrator", 403
            )
        rehash = (
            await self.passwords.hash(password) if self.passwords.needs_rehash(found[1]) else None
        )
        async with self.db.transaction() as tx:
            # The password was checked against the row read before; a reset or password change
            # committed since then ends every session, and must end this one before it begins.
            current = await user_store.get(tx.conn, user.id, lock=True)
            if current is None or current.session_version != user.session_version:
                raise _bad_credentials()
            await self.limiter.record_success(tx.conn, account_key=key)
            if rehash is not None:
                await user_store.update_user(tx.conn, user.id, password_hash=rehash)
            issued = await self.issue(tx, user, family_id=None, now=now)
        LOGINS.labels("success").inc()
        return issued

    async def refresh(self, *, refresh_token: str) -> IssuedTokens:
        now = utcnow()
        reused = False
        async with self.db.transaction() as tx:
            row = await token_store.find_refresh(tx.conn, hash_refresh_token(refresh_token))
            if row is None:
                raise invalid_token("the refresh token is invalid")
            if row.revoked_at is not None:
                raise invalid_token("the refresh token was revoked")
            if row.expires_at <= now:
                raise invalid_token("the refresh token has expired")
            if row.rotated_at is not None or not await token_store.mark_rotated(
                tx.conn, row.id, now
            ):
                # A rotated token came back: someone holds a copy. End the whole login.
                await token_store.revoke_family(tx.conn, row.family_id, now)
                reused = True
            else:
                user = await user_store.get(tx.conn, row.user_id)
                if user is None or user.disabled_at is not None:
                    raise invalid_token("the refresh token is invalid")
                issued = await self.issue(tx, user, family_id=row.family_id, now=now)
        if reused:
            raise invalid_token("the refresh token was already used; the session is revoked")
        return issued

    async def logout(self, *, refresh_token: str) -> None:
        """End the login the token belongs to. Unknown tokens are ignored (RFC 7009 §2.2)."""
        now = utcnow()
        async with self.db.transaction() as tx:
            row = await token_store.find_refresh(tx.conn, hash_refresh_token(refresh_token))
            if row is not None:
                await token_store.revoke_family(tx.conn, row.family_id, now)

    async def logout_everywhere(self, *, user: User) -> None:
        async with self.db.transaction() as tx:
            await self.revoke_all(tx, user.id)

    async def revoke_all(self, tx: Tx, user_id: str, **user_values: object) -> None:
        """End every session of the user (refresh tokens, access tokens, open sockets) when
        `tx` commits, changing `user_values` of the account in the same write."""
        now = utcnow()
        await token_store.revoke_user(tx.conn, user_id, now)
        await user_store.bump_session_version(tx.conn, user_id, updated_at=now, **user_values)
        # This process refuses the user's tokens at once; the others when the envelope below
        # reaches their hub.
        tx.after_commit(lambda: self.sessions.forget_user(user_id))
        if self.publisher is not None:
            envelope = Envelope(
                type="session.revoked", data=encode(SessionRevoked()), user_ids=(user_id,)
            )
            self.publisher.after_commit(tx, envelope)

    async def confirm_password(self, *, user: User, password: str, address: str) -> None:
        """The caller proves it is the account's owner again (password change, deletion):
        a wrong password is 403 and counts as a failed login."""
        key = _account_key(user, "")
        now = utcnow()
        async with self.db.read() as conn:
            await self.limiter.check(conn, account_key=key, address=address, now=now)
            stored = await user_store.get_hash(conn, user.id)
        if not await self.passwords.verify(stored, password):
            async with self.db.transaction() as tx:
                await self.limiter.record_failure(
                    tx.conn, account_key=key, address=address, now=now
                )
            # 403, not 401: the access token is fine; a 401 would make clients drop the session.
            raise _bad_credentials(403)

    async def change_password(
        self, *, user: User, current_password: str, new_password: str, address: str
    ) -> None:
        await self.confirm_password(user=user, password=current_password, address=address)
        new_hash = await self.passwords.hash(new_password)
        async with self.db.transaction() as tx:
            await self.revoke_all(tx, user.id, password_hash=new_hash)

    async def authenticate(self, token: str, *, fresh: bool = False) -> User:
        """The user a valid access token of a live session belongs to. Served from the
        process's cache (`access_cache`) unless `fresh`: then the user's row is read now, for
        answers that show the profile itself."""
        cache = self.sessions
        claims = cache.claims(token)
        if claims is None:
            claims = self.access.verify(token)
            cache.remember_claims(token, claims)
        user = None if fresh else cache.user(claims.user_id)
        # A token newer than the remembered row: the row is out of date (its sessions were
        # ended, and the user logged in again, before this process heard of it).
        if user is None or user.session_version < claims.session_version:
            generation = cache.generation
            ACCESS_USER_READS.inc()
            async with self.db.read() as conn:
                user = await user_store.get(conn, claims.user_id)
            if user is not None:
                cache.remember_user(user, generation)
        if user is None or user.session_version != claims.session_version:
            raise invalid_token("the session has ended; log in again")
        return user
