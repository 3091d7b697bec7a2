"""Outgoing mail: queued by the request, sent by a task of the process, retried with backoff.

A request that mails (a verification or reset code) only queues the message: the SMTP server's
speed or absence never shows in a response time, which matters where timing would tell an
attacker whether an address has an account. Without `SMTP_URL` the mail is written to the log
instead, so development needs no mail server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from reverb.config import SmtpServer
from reverb.metrics import MAILS

log = logging.getLogger(__name__)

# Mails waiting for the SMTP server. A burst of sign-ups fits; past it a mail is dropped and
# counted rather than memory growing while the server is away (the person can ask again).
QUEUE_SIZE = 1000
# Tries per mail and the wait before each retry: about half a minute of a mail server being
# away (restarting, greylisting briefly) is covered; a longer outage is logged and counted.
RETRY_DELAYS_S = (1.0, 5.0, 25.0)
# One SMTP conversation, connect to QUIT: a server that stops answering is given up on.
SMTP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str

    def message(self, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, self.to, self.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        return msg


class Mailer:
    """`send` queues; `start` runs the task that delivers; `close` lets queued mail go out for
    a moment, then stops."""

    def __init__(self, *, server: SmtpServer | None, sender: str, log_bodies: bool) -> None:
        self.server = server
        self.sender = sender
        # Only where no SMTP server is configured in development: the log is the mailbox.
        self._log_bodies = log_bodies
        self._queue: asyncio.Queue[Mail] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def send(self, mail: Mail) -> None:
        try:
            self._queue.put_nowait(mail)
        except asyncio.QueueFull:
            MAILS.labels("dropped").inc()
            log.error("mail queue full (%d): a mail was dropped", QUEUE_SIZE)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mailer")

    async def close(self, grace_s: float) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            mail = await self._queue.get()
            try:
                await self._deliver(mail)
            finally:
                self._queue.task_done()

    async def _deliver(self, mail: Mail) -> None:
        if self.server is None:
            if self._log_bodies:
                log.info("mail (SMTP_URL unset) to %s: %s\n%s", mail.to, mail.subject, mail.text)
            else:
                log.warning("mail not sent: SMTP_URL is unset (%s)", mail.subject)
            MAILS.labels("logged").inc()
            return
        message = mail.message(self.sender)
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
            try:
                await self._smtp(message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
                # One line per failure, without the mail's text (it holds a code).
                log.warning(
                    "mail %r: attempt %d failed: %s: %s",
                    mail.subject,
                    attempt,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                if delay is None:
                    MAILS.labels("failed").inc()
                    log.error("mail %r given up after %d attempts", mail.subject, attempt)
                    return
                await asyncio.sleep(delay)
            else:
                MAILS.labels("sent").inc()
                return

    async def _smtp(self, message: EmailMessage) -> None:
        server = self.server
        assert server is not None
        await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=server.starttls,
            timeout=SMTP_TIMEOUT_S,
        )
