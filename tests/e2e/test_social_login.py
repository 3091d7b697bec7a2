"""Logging in through a real OpenID provider process (oidc-provider-mock, built on Authlib),
driven like a browser: to the provider, approve, back to Reverb, on to the app with a one-time
login code, traded for a session."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import oauth_states, users
from reverb.storage.types import utcnow
from tests import conftest
from tests.e2e import social_site
from tests.e2e.server import reverb_serve, server_env
from tests.e2e.social_site import Site, running_site, state_is_single_use
from tests.ports import free_port

pytestmark = pytest.mark.e2e

provider = social_site.openid_provider  # the fixture, by the name the tests use
CLIENT_ID = social_site.CLIENT_ID


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, test_database: conftest.TestDatabase, provider: str
) -> Iterator[Site]:
    """One Reverb for the module's tests (each uses people of its own)."""
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
    tmp_path = tmp_path_factory.mktemp("social")
    with running_site(tmp_path, test_database.fresh_url(tmp_path), provider, providers) as site:
        yield site


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
    me = site.me(first)
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
    state_is_single_use(site, callback)


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


def test_an_account_without_a_password_is_deleted_with_a_fresh_provider_login(
    site: Site,
) -> None:
    claims = {"email": "tia@example.com", "email_verified": True}
    session = site.login("tia-1", claims)
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    me = f"{site.reverb}/api/users/me"
    # No password to give; a password is refused.
    wrong = site.http.request("DELETE", me, json={"password": "anything at all"}, headers=auth)
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_credentials"
    # Someone else's fresh login does not count.
    other = site.back_at_app(site.approve("sam-1", {"email": "sam@example.com"}))["login_code"]
    theirs = site.http.request("DELETE", me, json={"login_code": other}, headers=auth)
    assert theirs.status_code == 403
    fresh = site.back_at_app(site.approve("tia-1", claims))["login_code"]
    gone = site.http.request("DELETE", me, json={"login_code": fresh}, headers=auth)
    assert gone.status_code == 204, gone.text
    assert site.http.get(me, headers=auth).status_code == 401
    # Back through the same provider: a new account, the address free again.
    again = site.login("tia-1", claims)
    assert isinstance(again["user"], dict) and again["user"]["id"] != session["user"]["id"]  # type: ignore[index]
    assert again["user"]["email"] == "tia@example.com"


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
