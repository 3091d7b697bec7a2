"""A real SMTP server for the tests (aiosmtpd, in a thread of its own), keeping what it gets."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class MailSink:
    """What the server received, as parsed messages, with the envelope's recipients."""

    mails: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.mails.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.mails)


@contextmanager
def smtp_server(
    port: int,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
    sink: MailSink | None = None,
) -> Iterator[MailSink]:
    """Serve SMTP on 127.0.0.1:`port` until the block ends. `starttls`: STARTTLS required;
    `implicit_tls`: TLS from the first byte; `login`: AUTH LOGIN/PLAIN required."""
    sink = sink or MailSink()

    def authenticate(_s: Any, _ss: Any, _e: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = (
            login is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == login
        )
        if ok:
            sink.logins.append(data.login.decode())
        return AuthResult(success=ok)

    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        ssl_context=implicit_tls,
        tls_context=starttls,
        require_starttls=starttls is not None,
        authenticator=authenticate if login else None,
        auth_required=login is not None,
        auth_require_tls=starttls is not None or implicit_tls is not None,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
