"""A Reverb with login providers, and a browser-like client for the social login flow (the
OpenID and GitHub login tests share them)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.config import async_database_url
from reverb.storage.db import Database
from tests.e2e.server import reverb_serve, server_env, server_process
from tests.ports import free_port

CLIENT_ID = "reverb-app"


@pytest.fixture(scope="module")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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

    def me(self, session: Mapping[str, object]) -> httpx.Response:
        """`GET /api/users/me` with the session's access token."""
        token = session["access_token"]
        return self.http.get(
            f"{self.reverb}/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )

    def database(self, work: Callable[[AsyncConnection], Awaitable[object]]) -> None:
        async def run() -> None:
            db = Database(async_database_url(self.database_url))
            try:
                async with db.transaction() as tx:
                    await work(tx.conn)
            finally:
                await db.close()

        asyncio.run(run())


@contextmanager
def running_site(
    cwd: Path, database_url: str, provider: str, providers: Sequence[Mapping[str, str]]
) -> Iterator[Site]:
    """`reverb serve` with these `providers`, and a Site on it; `provider` is the URL of the
    one the tests drive."""
    port = free_port()
    reverb = f"http://127.0.0.1:{port}"
    app = f"http://127.0.0.1:{free_port()}/signed-in"  # the app: only its URL is needed
    env = server_env(
        database_url,
        oauth_providers=json.dumps(providers),
        oauth_redirect_uris=f"{app},https://elsewhere.example/cb",
        public_url=reverb,
    )
    with reverb_serve(cwd, env, port=port) as (url, log):
        site = Site(url, provider, app, database_url)
        try:
            yield site
        finally:
            site.http.close()
    assert "login_code=" not in log.read_text()  # never in a log line


def state_is_single_use(site: Site, callback: str) -> None:
    """The provider's `callback` with another state is refused; as sent, it works once."""
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = urlunsplit(parts._replace(query=urlencode({**query, "state": query["state"] + "x"})))
    r = site.http.get(forged)
    assert r.status_code == 400 and r.json()["code"] == "invalid_state"
    assert "login_code" in site.back_at_app(callback)  # the genuine one still works, once
    replay = site.http.get(callback)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"
