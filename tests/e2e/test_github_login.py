"""Logging in through GitHub's OAuth 2 (no OpenID Connect: the user and e-mails come from its
API), against a stand-in GitHub process (tests/github_stand_in.py) at the provider's
`authorize_url`, `token_url` and `api_url`, driven like a browser: to GitHub, straight back to
Reverb with a code, on to the app with a one-time login code, traded for a session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reverb.storage.tables import identities, users
from reverb.storage.types import utcnow
from tests import conftest
from tests.e2e.server import server_process
from tests.e2e.social_site import Site, running_site, state_is_single_use
from tests.helpers import PASSWORD
from tests.ports import free_port

pytestmark = pytest.mark.e2e

CLIENT_ID, CLIENT_SECRET = "Iv1.reverb", "gh-s3cret"
Json = dict[str, object]
STAND_IN = Path(__file__).parents[1] / "github_stand_in.py"


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-in GitHub, its own process on a free port."""

    def argv(port: int) -> list[str]:
        return [
            *(sys.executable, str(STAND_IN), "--port", str(port)),
            *("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
        ]

    cwd = tmp_path_factory.mktemp("github")
    with server_process(cwd, {}, argv, health="/_health") as (url, _):
        yield url


def at(base: str) -> dict[str, str]:
    """The GitHub endpoints of a server at `base` (GitHub Enterprise's layout, with the API at
    the root as on github.com)."""
    return {
        "authorize_url": f"{base}/login/oauth/authorize",
        "token_url": f"{base}/login/oauth/access_token",
        "api_url": base,
    }


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, test_database: conftest.TestDatabase, github: str
) -> Iterator[Site]:
    providers = [
        {"name": "github", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **at(github)},
        # GitHub at an address where nothing answers.
        {
            "name": "down",
            "client_id": "x",
            "client_secret": "y",
            **at(f"http://127.0.0.1:{free_port()}"),
        },
    ]
    tmp_path = tmp_path_factory.mktemp("social")
    with running_site(tmp_path, test_database.fresh_url(tmp_path), github, providers) as site:
        yield site


def to_github(site: Site, user: Json, emails: list[Json], fault: str | None = None) -> str:
    """Start a login; at GitHub, `user` logs in (and the stand-in misbehaves as `fault`
    says), which sends the browser straight back: the callback URL it sends it to."""
    nxt = {"user": user, "emails": emails, "fault": fault}
    assert httpx.put(f"{site.provider}/_next", json=nxt).status_code == 204
    start = site.to_provider("github")
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(f"{site.provider}/login/oauth/authorize?")
    assert "code_challenge=" in authorize and "scope=read%3Auser+user%3Aemail" in authorize
    back = site.http.get(authorize)
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith(f"{site.reverb}/api/auth/oauth/github/callback?")
    return callback


def login(site: Site, user: Json, emails: list[Json]) -> Json:
    got = site.back_at_app(to_github(site, user, emails))
    assert "login_code" in got, got
    session = site.exchange(got["login_code"])
    assert session.status_code == 200, session.text
    body: Json = session.json()
    return body


def email(address: str, *, primary: bool = True, verified: bool = True) -> Json:
    return {"email": address, "primary": primary, "verified": verified, "visibility": None}


def test_a_new_account_then_the_same_account_again(site: Site) -> None:
    octo = {"id": 583231, "login": "Octo-Cat", "name": "The Octocat"}
    emails = [
        email("old@example.com", primary=False),
        email("Octo@Example.com"),
        email("spare@example.com", primary=False, verified=False),
    ]
    first = login(site, octo, emails)
    user = first["user"]
    assert isinstance(user, dict)
    # The primary verified address; the login, made a username.
    assert user["email"] == "octo@example.com" and user["email_verified"] is True
    assert user["username"] == "octocat" and user["display_name"] == "The Octocat"
    me = site.me(first)
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    # The same GitHub account (its id, whatever its login and addresses are now).
    again = login(site, {**octo, "login": "octo-renamed"}, [email("new@example.com")])
    assert isinstance(again["user"], dict) and again["user"]["id"] == user["id"]


def test_an_unverified_address_joins_no_account(site: Site) -> None:
    r = site.http.post(
        f"{site.reverb}/api/auth/register",
        json={"username": "ivy", "email": "ivy@example.com", "password": PASSWORD},
    )
    assert r.status_code == 201
    ivy = r.json()["user"]["id"]

    async def verified(conn: AsyncConnection) -> None:
        await conn.execute(
            update(users).where(users.c.id == ivy).values(email_verified_at=utcnow())
        )

    site.database(verified)
    # Someone whose GitHub account names Ivy's address without having proven it: refused, as
    # for an OpenID provider's unverified claim; Ivy's account is not joined.
    stranger = {"id": 777, "login": "ivy-not-really"}
    got = site.back_at_app(to_github(site, stranger, [email("ivy@example.com", verified=False)]))
    assert got == {"error": "email_in_use"}
    found: list[object] = []

    async def linked(conn: AsyncConnection) -> None:
        found.extend((await conn.execute(select(identities.c.user_id))).scalars())

    site.database(linked)
    assert ivy not in found
    password = site.http.post(
        f"{site.reverb}/api/auth/login", json={"username": "ivy", "password": PASSWORD}
    )
    assert password.status_code == 200, password.text

    # Nobody has the address: a new account, its address not verified.
    fresh = login(site, {"id": 778, "login": "wren"}, [email("wren@example.com", verified=False)])
    assert isinstance(fresh["user"], dict)
    assert fresh["user"]["email"] == "wren@example.com"
    assert fresh["user"]["email_verified"] is False


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("token_garbage", "provider_error"),
        ("token_refused", "provider_error"),
        ("user_garbage", "provider_error"),
        ("user_not_an_object", "provider_error"),
        ("emails_500", "provider_unavailable"),
    ],
)
def test_github_answering_garbage(site: Site, fault: str, error: str) -> None:
    callback = to_github(site, {"id": 900, "login": "gus"}, [email("gus@example.com")], fault)
    assert site.back_at_app(callback) == {"error": error}


def test_github_down(site: Site) -> None:
    start = site.to_provider("down")
    assert start.status_code == 302
    # GitHub's login page would send the browser back with a code; its API is what is down.
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    callback = f"{site.reverb}/api/auth/oauth/down/callback?" + urlencode(
        {"code": "a-code", "state": state}
    )
    r = site.http.get(callback)
    assert (
        r.status_code == 302 and r.headers["location"] == f"{site.app}?error=provider_unavailable"
    )


def test_a_tampered_or_replayed_state_is_refused(site: Site) -> None:
    callback = to_github(site, {"id": 901, "login": "hal"}, [email("hal@example.com")])
    state_is_single_use(site, callback)
