"""Outgoing mail against a real SMTP server (aiosmtpd): plain, STARTTLS with a login, implicit
TLS; retries while the server is away; the log as the mailbox when SMTP_URL is unset."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trustme

from reverb.config import ConfigError, smtp_server
from reverb.services import mailer as mailer_module
from reverb.services.mailer import Mail, Mailer
from tests.helpers import until
from tests.ports import free_port
from tests.smtp_server import MailSink
from tests.smtp_server import smtp_server as serve_smtp

CODE = "493817"
MAIL = Mail(
    to="ann@example.com",
    subject="Your Reverb code",
    text=f"Your code is {CODE}. It works for 15 minutes.",
    html=f"<p>Your code is <b>{CODE}</b>. It works for 15 minutes.</p>",
)
SENDER = "Reverb <no-reply@reverb.test>"


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """A certificate authority the client trusts (through SSL_CERT_FILE, as an operator's
    own CA would be), and none other."""
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return authority


def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def deliver(url: str) -> Mailer:
    mailer = Mailer(server=smtp_server(url), sender=SENDER, log_bodies=False)
    mailer.start()
    mailer.send(MAIL)
    return mailer


def check(sink: MailSink) -> None:
    [message] = sink.mails
    assert sink.recipients == [["ann@example.com"]]
    assert message["From"] == SENDER and message["To"] == "ann@example.com"
    assert message["Subject"] == "Your Reverb code" and message["Message-ID"]
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert CODE in text.get_content() and f"<b>{CODE}</b>" in html.get_content()


async def test_plain_smtp() -> None:
    port = free_port()
    with serve_smtp(port) as sink:
        mailer = await deliver(f"smtp://127.0.0.1:{port}")
        await until(lambda: sink.count() == 1, "the mail arrives")
        await mailer.close(1.0)
    check(sink)


async def test_starttls_with_a_login(ca: trustme.CA) -> None:
    port = free_port()
    with serve_smtp(port, starttls=server_context(ca), login=("reverb", "p@ss:word")) as sink:
        # User and password percent-encoded in the URL, as in any URL.
        mailer = await deliver(f"smtp+starttls://reverb:p%40ss%3Aword@127.0.0.1:{port}")
        await until(lambda: sink.count() == 1, "the mail arrives over STARTTLS")
        await mailer.close(1.0)
    check(sink)
    assert sink.logins == ["reverb"]


async def test_implicit_tls(ca: trustme.CA) -> None:
    port = free_port()
    with serve_smtp(port, implicit_tls=server_context(ca)) as sink:
        mailer = await deliver(f"smtps://127.0.0.1:{port}")
        await until(lambda: sink.count() == 1, "the mail arrives over TLS")
        await mailer.close(1.0)
    check(sink)


async def test_an_untrusted_certificate_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    stranger = trustme.CA()  # not in the client's trust store
    with serve_smtp(port, implicit_tls=server_context(stranger)) as sink:
        mailer = Mailer(
            server=smtp_server(f"smtps://127.0.0.1:{port}"), sender=SENDER, log_bodies=False
        )
        mailer.start()
        mailer.send(MAIL)
        await until(lambda: "attempt 1 failed" in caplog.text, "the failed attempt is logged")
        await mailer.close(0.0)
    assert sink.count() == 0


async def test_retried_while_the_server_is_away_and_logged_once_per_failure(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailer_module, "RETRY_DELAYS_S", (0.5, 0.5, 0.5))
    port = free_port()
    caplog.set_level(logging.INFO, logger="reverb.services.mailer")
    mailer = await deliver(f"smtp://127.0.0.1:{port}")  # nothing listens yet
    await until(lambda: "attempt 1 failed" in caplog.text, "the first attempt fails")
    with serve_smtp(port) as sink:
        await until(lambda: sink.count() == 1, "a retry delivers once the server is there")
        await mailer.close(1.0)
    check(sink)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert 1 <= len(failures) <= 3
    assert all(len(r.getMessage().splitlines()) == 1 for r in failures)
    assert CODE not in caplog.text


async def test_given_up_after_every_retry_and_the_next_mail_still_goes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailer_module, "RETRY_DELAYS_S", (0.01, 0.01))
    port = free_port()
    mailer = await deliver(f"smtp://127.0.0.1:{port}")
    await until(lambda: "given up after 3 attempts" in caplog.text, "the mail is given up")
    with serve_smtp(port) as sink:
        mailer.send(MAIL)
        await until(lambda: sink.count() == 1, "the next mail goes out")
        await mailer.close(1.0)
    assert CODE not in caplog.text


async def test_without_smtp_the_log_is_the_mailbox_in_development_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reverb.services.mailer")
    for log_bodies in (True, False):
        mailer = Mailer(server=None, sender=SENDER, log_bodies=log_bodies)
        mailer.start()
        caplog.clear()
        mailer.send(MAIL)
        await mailer.close(5.0)
        assert "Your Reverb code" in caplog.text
        assert (CODE in caplog.text) is log_bodies


async def test_sending_never_waits_and_a_full_queue_drops(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailer_module, "QUEUE_SIZE", 2)
    mailer = Mailer(server=smtp_server("smtp://127.0.0.1:9"), sender=SENDER, log_bodies=False)
    # Not started: nothing drains the queue, and send returns at once all the same.
    for _ in range(3):
        mailer.send(MAIL)
    assert "mail queue full (2): a mail was dropped" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, False, False, None, None)),
        ("smtp+starttls://u:p%2Fw@mx:2525", ("mx", 2525, False, True, "u", "p/w")),
        ("smtps://mx", ("mx", 465, True, False, None, None)),
    ],
)
def test_smtp_urls(url: str, expected: tuple[object, ...]) -> None:
    s = smtp_server(url)
    assert (s.host, s.port, s.implicit_tls, s.starttls, s.username, s.password) == expected


@pytest.mark.parametrize("url", ["http://mx", "smtp://", "smtp://mx:99999", "mx:25"])
def test_bad_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="SMTP_URL"):
        smtp_server(url)
