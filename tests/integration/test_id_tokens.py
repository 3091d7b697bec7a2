"""The ID token checks of OpenID Connect login, one by one: signature, issuer, audience, nonce,
expiry. Tokens are signed here with keys served over HTTP as a provider serves them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from reverb.config import OAuthProvider, Settings
from reverb.services.social import Endpoints, Refused, SocialLogin

ISSUER = "https://id.example"
NONCE = "n-0123456789"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(KeySet([KEY]).as_dict(private=False)).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def token(key: RSAKey = KEY, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "reverb-app",
        "sub": "s1",
        "nonce": NONCE,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


@pytest.fixture
def login(settings: Settings) -> SocialLogin:
    return SocialLogin(settings, auth=None)  # type: ignore[arg-type]  # only the token checks


PROVIDER = OAuthProvider(name="id", client_id="reverb-app", client_secret="s", issuer=ISSUER)


async def check(login: SocialLogin, jwks_url: str, id_token: str) -> dict[str, Any]:
    endpoints = Endpoints("https://id.example/a", "https://id.example/t", jwks_url)
    return await login._id_token_claims(PROVIDER, endpoints, id_token, NONCE)


async def test_a_good_token_passes(login: SocialLogin, jwks_url: str) -> None:
    assert (await check(login, jwks_url, token()))["sub"] == "s1"
    # An audience list that names us is fine too.
    assert (await check(login, jwks_url, token(aud=["other", "reverb-app"])))["sub"] == "s1"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"aud": None},
        {"iss": "https://evil.example"},
        {"nonce": "another-nonce"},
        {"nonce": None},
        {"exp": int(time.time()) - 3600},
        {"sub": None},
    ],
    ids=["audience", "no-audience", "issuer", "nonce", "no-nonce", "expired", "no-subject"],
)
async def test_each_claim_is_checked(
    login: SocialLogin, jwks_url: str, changes: dict[str, Any]
) -> None:
    with pytest.raises(Refused) as refused:
        await check(login, jwks_url, token(**changes))
    assert refused.value.code == "invalid_id_token"


@pytest.mark.parametrize("bad", ["signed by another key", "not a token", "alg none"])
async def test_the_signature_is_checked(login: SocialLogin, jwks_url: str, bad: str) -> None:
    if bad == "signed by another key":
        forged = token(STRANGER)
    elif bad == "alg none":
        head, body, _ = token().split(".")
        forged = f"{head}.{body}."
    else:
        forged = "not.a.token"
    with pytest.raises(Refused) as refused:
        await check(login, jwks_url, forged)
    assert refused.value.code == "invalid_id_token"
