"""Logging in through a real OpenID provider process (oidc-provider-mock, built on Authlib),
driven like a browser: to the provider, approve, back to Reverb, on to the app with a one-time
login code, traded for a session."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.config import async_database_url
from reverb.storage.db import Database
from reverb.storage.tables import oauth_states, users
from reverb.storage.types import utcnow
from tests import conftest
from tests.e2e.server import free_port, reverb_serve, server_env, server_process

pytestmark = pytest.mark.e2e

CLIENT_ID = "reverb-app"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The OpenID provider, its own process on a free port, requiring a nonce."""
    cwd = tmp_path_factory.mktemp("oidc")

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--require-nonce"]

    with server_process(cwd, {}, argv, health="/.well-known/openid-configuration") as (url, _):
        yield url


class Site:
    def __init__(self, reverb: str, provider: str, app: str, database_url: str) -> None:
        self.reverb, self.provider, self.app, self.database_url = (
            reverb,
            provider,
            app,
            database_url,
        )
        self.http = httpx.Client(timeout=30)

    def to_provider(self, name: str = "mock", redirect_uri: str | None = None) -> httpx.Response:
        return self.http.get(
            f"{self.reverb}/api/auth/oauth/{name}/start",
            params={"redirect_uri": redirect_uri or self.app},
        )

    def approve(self, sub: str, claims: dict[str, object]) -> str:
        """Start a login, approve it at the provider as `sub`; the callback URL it sends back."""
        assert httpx.put(f"{self.provider}/users/{quote(sub)}", json=claims).status_code == 204
        start = self.to_provider()
        assert start.status_code == 302, start.text
        authorize = start.headers["location"]
        assert authorize.startswith(self.provider) and "code_challenge=" in authorize
        approved = self.http.post(authorize, data={"sub": sub})
        assert approved.status_code == 302, approved.text
        callback = approved.headers["location"]
        assert callback.startswith(f"{self.reverb}/api/auth/oauth/mock/callback?")
        return callback

    def back_at_app(self, callback: str) -> dict[str, str]:
        """Follow the callback; the query the app gets at its redirect URI."""
        r = self.http.get(callback)
        assert r.status_code == 302, r.text
        back = r.headers["location"]
        assert back.startswith(self.app + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}

    def exchange(self, login_code: str) -> httpx.Response:
        return self.http.post(
            f"{self.reverb}/api/auth/oauth/exchange", json={"login_code": login_code}
        )

    def login(self, sub: str, claims: dict[str, object]) -> dict[str, object]:
        got = self.back_at_app(self.approve(sub, claims))
        assert "login_code" in got, got
        session = self.exchange(got["login_code"])
        assert session.status_code == 200, session.text
        body: dict[str, object] = session.json()
        return body

    def database(self, work: Callable[[AsyncConnection], Awaitable[object]]) -> None:
        async def run() -> None:
            db = Database(async_database_url(self.database_url))
            try:
                async with db.transaction() as tx:
                    await work(tx.conn)
            finally:
                await db.close()

        asyncio.run(run())


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, test_database: conftest.TestDatabase, provider: str
) -> Iterator[Site]:
    """One Reverb for the module's tests (each uses people of its own)."""
    tmp_path = tmp_path_factory.mktemp("social")
    database_url = test_database.fresh_url(tmp_path)
    port = free_port()
    reverb = f"http://127.0.0.1:{port}"
    app = f"http://127.0.0.1:{free_port()}/signed-in"  # the app: only its URL is needed
    providers = [
        {
            "name": "mock",
            "client_id": CLIENT_ID,
            "client_secret": "s3cret",
            "issuer": provider,
            "display_name": "Mock ID",
        },
        # A provider that is not running.
        {
            "name": "down",
            "client_id": "x",
            "client_secret": "y",
            "issuer": f"http://127.0.0.1:{free_port()}",
        },
    ]
    env = server_env(
        database_url,
        oauth_providers=json.dumps(providers),
        oauth_redirect_uris=f"{app},https://elsewhere.example/cb",
        public_url=reverb,
    )
    with reverb_serve(tmp_path, env, port=port) as (url, log):
        site = Site(url, provider, app, database_url)
        try:
            yield site
        finally:
            site.http.close()
    assert "login_code=" not in log.read_text()  # never in a log line


def test_providers_are_listed(site: Site) -> None:
    r = site.http.get(f"{site.reverb}/api/auth/providers")
    assert r.json() == [
        {"name": "mock", "display_name": "Mock ID"},
        {"name": "down", "display_name": "Down"},
    ]


def test_a_new_account_then_the_same_account_again(site: Site) -> None:
    claims = {"email": "Zoe@Example.com", "email_verified": True, "name": "Zoe Q"}
    first = site.login("zoe-1", claims)
    user = first["user"]
    assert isinstance(user, dict)
    assert user["email"] == "zoe@example.com" and user["email_verified"] is True
    assert user["display_name"] == "Zoe Q" and user["username"] == "zoe"
    me = site.http.get(
        f"{site.reverb}/api/users/me", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert me.status_code == 200
    second = site.login("zoe-1", claims)
    assert isinstance(second["user"], dict) and second["user"]["id"] == user["id"]


def test_a_login_code_works_once(site: Site) -> None:
    got = site.back_at_app(
        site.approve("yan", {"email": "yan@example.com", "email_verified": True})
    )
    assert site.exchange(got["login_code"]).status_code == 200
    again = site.exchange(got["login_code"])
    assert again.status_code == 400 and again.json()["code"] == "invalid_code"
    assert site.exchange("made-up").json()["code"] == "invalid_code"


def test_a_tampered_or_replayed_state_is_refused(site: Site) -> None:
    callback = site.approve("xia", {"email": "xia@example.com", "email_verified": True})
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = urlunsplit(parts._replace(query=urlencode({**query, "state": query["state"] + "x"})))
    r = site.http.get(forged)
    assert r.status_code == 400 and r.json()["code"] == "invalid_state"
    assert "login_code" in site.back_at_app(callback)  # the genuine one still works, once
    replay = site.http.get(callback)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"


def test_an_unlisted_redirect_uri_is_refused(site: Site) -> None:
    r = site.to_provider(redirect_uri=site.app + "/../evil")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = site.to_provider(name="nobody")
    assert r.status_code == 404


def test_a_wrong_nonce_is_refused(site: Site) -> None:
    callback = site.approve("wu", {"email": "wu@example.com", "email_verified": True})

    async def other_nonce(conn: AsyncConnection) -> None:
        await conn.execute(update(oauth_states).values(nonce="not-the-one-sent"))

    site.database(other_nonce)
    assert site.back_at_app(callback) == {"error": "invalid_id_token"}


def test_a_provider_that_is_down_or_answers_garbage(site: Site) -> None:
    r = site.to_provider(name="down")
    assert r.status_code == 302
    assert r.headers["location"] == f"{site.app}?error=provider_unavailable"
    # Denied at the provider: back to the app with an error, not a login.
    callback = site.approve("vi", {"email": "vi@example.com"})
    denied = (
        callback.split("?")[0]
        + "?"
        + urlencode(
            {"state": parse_qs(urlsplit(callback).query)["state"][0], "error": "access_denied"}
        )
    )
    assert site.back_at_app(denied) == {"error": "access_denied"}


def test_an_existing_account_is_joined_only_when_both_verified_the_email(site: Site) -> None:
    r = site.http.post(
        f"{site.reverb}/api/auth/register",
        json={"username": "uma", "email": "uma@example.com", "password": "a good password"},
    )
    assert r.status_code == 201
    uma = r.json()["user"]["id"]
    # Reverb has not verified Uma's address: the provider's word alone does not join it.
    refused = site.back_at_app(
        site.approve("uma-x", {"email": "uma@example.com", "email_verified": True})
    )
    assert refused == {"error": "email_in_use"}

    async def verified(conn: AsyncConnection) -> None:
        await conn.execute(
            update(users).where(users.c.id == uma).values(email_verified_at=utcnow())
        )

    site.database(verified)
    # An unverified claim from the provider does not join it either.
    unverified = site.back_at_app(
        site.approve("uma-y", {"email": "uma@example.com", "email_verified": False})
    )
    assert unverified == {"error": "email_in_use"}
    joined = site.login("uma-x", {"email": "uma@example.com", "email_verified": True})
    assert isinstance(joined["user"], dict) and joined["user"]["id"] == uma


class Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"<html>not a discovery document")

    def log_message(self, *_: object) -> None:
        pass


def test_a_provider_answering_garbage(tmp_path: Path, database_url: str) -> None:
    server = HTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        issuer = f"http://127.0.0.1:{server.server_port}"
        app = "http://127.0.0.1:9/cb"
        env = server_env(
            database_url,
            oauth_providers=json.dumps(
                [{"name": "junk", "client_id": "a", "client_secret": "b", "issuer": issuer}]
            ),
            oauth_redirect_uris=app,
        )
        with reverb_serve(tmp_path, env) as (url, _):
            r = httpx.get(f"{url}/api/auth/oauth/junk/start", params={"redirect_uri": app})
            assert (
                r.status_code == 302
                and r.headers["location"] == f"{app}?error=provider_unavailable"
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
