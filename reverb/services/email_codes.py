"""Six-digit codes mailed to prove an address (verification) or to reset a password.

One live code per user and purpose; a new one replaces it. Stored as an HMAC keyed with the
server's secret (a plain hash of a 6-digit code is reversed in a million tries). A code works
once, until it expires, and is void after MAX_ATTEMPTS wrong tries.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from reverb.config import Settings
from reverb.domain.users import User
from reverb.services.mailer import Mail, Mailer
from reverb.storage import codes as code_store
from reverb.storage.db import Tx

Purpose = Literal["verify", "reset"]
MAX_ATTEMPTS = 5
# A new code for the same account and purpose no sooner than this after the last one: a
# script cannot turn Reverb into a mail cannon aimed at one inbox.
RESEND_AFTER = timedelta(seconds=60)


def _mail(purpose: Purpose, user: User, code: str, minutes: int) -> Mail:
    # The code is the only 6-digit number in the mail, so clients and tests can find it.
    if purpose == "verify":
        subject, lead = "Confirm your e-mail address", "Your Reverb confirmation code is"
        after = "Enter it in the app to confirm this address."
    else:
        subject, lead = "Reset your Reverb password", "Your Reverb password reset code is"
        after = "If you did not ask to reset your password, ignore this mail."
    text = (
        f"Hello {user.display_name},\n\n{lead}\n\n    {code}\n\n"
        f"It works once, for {minutes} minutes. {after}\n"
    )
    body = (
        f"<p>Hello {html.escape(user.display_name)},</p><p>{lead}</p>"
        f'<p style="font-size:24px;letter-spacing:4px"><b>{code}</b></p>'
        f"<p>It works once, for {minutes} minutes. {after}</p>"
    )
    return Mail(to=user.email, subject=subject, text=text, html=body)


@dataclass(slots=True)
class EmailCodes:
    settings: Settings
    mailer: Mailer

    def _hash(self, user_id: str, purpose: Purpose, code: str) -> str:
        message = f"{purpose}:{user_id}:{code}".encode()
        return hmac.new(self.settings.secret.encode(), message, hashlib.sha256).hexdigest()

    async def issue(
        self, tx: Tx, user: User, purpose: Purpose, *, now: datetime
    ) -> datetime | None:
        """Store a new code and mail it once `tx` commits. Returns None, or, when the last
        code is too recent to send another, when the next may be sent."""
        last = await code_store.get(tx.conn, user.id, purpose, lock=True)
        if last is not None and last.created_at + RESEND_AFTER > now:
            return last.created_at + RESEND_AFTER
        code = f"{secrets.randbelow(1_000_000):06d}"
        ttl = self.settings.email_code_ttl_seconds
        await code_store.replace(
            tx.conn,
            user.id,
            purpose,
            code_hash=self._hash(user.id, purpose, code),
            now=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        mail = _mail(purpose, user, code, ttl // 60)
        tx.after_commit(lambda: self.mailer.send(mail))
        return None

    async def use(
        self, tx: Tx, user_id: str, purpose: Purpose, code: str, *, now: datetime
    ) -> bool:
        """Whether `code` is the user's live code for `purpose` (then it is used up). A wrong
        one counts as a try, written with `tx`: commit it even when the answer is no."""
        row = await code_store.get(tx.conn, user_id, purpose, lock=True)
        if row is None or row.expires_at <= now:
            return False
        if hmac.compare_digest(row.code_hash, self._hash(user_id, purpose, code)):
            await code_store.remove(tx.conn, user_id, purpose)
            return True
        if row.attempts + 1 >= MAX_ATTEMPTS:
            await code_store.remove(tx.conn, user_id, purpose)
        else:
            await code_store.count_attempt(tx.conn, user_id, purpose)
        return False
