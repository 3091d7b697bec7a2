"""A stand-in for GitHub's OAuth 2 and user API, run as its own process by the tests:
`python tests/github_stand_in.py --port N --client-id ID --client-secret SECRET`.

It checks what GitHub checks (the client, the redirect URI, the code once, PKCE S256) and
answers as GitHub does. The test says who logs in next, and how the stand-in should misbehave
for that login, with `PUT /_next {"user": {...}, "emails": [...], "fault": null | FAULT}`:
`token_garbage` (an HTML page for a token), `token_refused` (GitHub's error JSON),
`user_garbage` (an HTML page for the user), `user_not_an_object` (`[]`), `emails_500`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

Json = dict[str, Any]


class StandIn:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.next: Json | None = None
        self.codes: dict[str, Json] = {}
        self.tokens: dict[str, Json] = {}
        self.lock = threading.Lock()


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, status: int, body: object, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self) -> None:
        if self.path != "/_next":
            return self._answer(404, {"message": "Not Found"})
        with self.server.state.lock:
            self.server.state.next = json.loads(self._body())
        self._answer(204, b"")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/_health":
            return self._answer(200, {"ok": True})
        if parts.path == "/login/oauth/authorize":
            return self._authorize(query)
        if parts.path in ("/user", "/user/emails"):
            return self._api(parts.path)
        self._answer(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/login/oauth/access_token":
            return self._answer(404, {"message": "Not Found"})
        self._token({k: v[0] for k, v in parse_qs(self._body().decode()).items()})

    def _authorize(self, query: dict[str, str]) -> None:
        state = self.server.state
        with state.lock:
            login, state.next = state.next, None
        if (
            login is None
            or query.get("client_id") != state.client_id
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or not query.get("redirect_uri")
        ):
            return self._answer(400, {"message": "bad authorization request"})
        code = secrets.token_urlsafe(16)
        with state.lock:
            state.codes[code] = {**login, "request": query}
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        self._redirect(f"{query['redirect_uri']}?{urlencode(back)}")

    def _client(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            return user, password
        return form.get("client_id"), form.get("client_secret")

    def _token(self, form: dict[str, str]) -> None:
        state = self.server.state
        with state.lock:
            login = state.codes.pop(form.get("code", ""), None)
        if login is not None and login.get("fault") == "token_garbage":
            return self._answer(200, b"<html>Unicorn!</html>", "text/html")
        request = login["request"] if login else {}
        if (
            login is None
            or login.get("fault") == "token_refused"
            or self._client(form) != (state.client_id, state.client_secret)
            or form.get("redirect_uri") != request["redirect_uri"]
            or _s256(form.get("code_verifier", "")) != request["code_challenge"]
        ):
            # GitHub answers a bad code with 200 and an error object.
            return self._answer(200, {"error": "bad_verification_code"})
        token = f"gho_{secrets.token_urlsafe(24)}"
        with state.lock:
            state.tokens[token] = login
        self._answer(200, {"access_token": token, "token_type": "bearer", "scope": "user:email"})

    def _api(self, path: str) -> None:
        given = self.headers.get("Authorization", "").split(" ", 1)
        with self.server.state.lock:
            login = (
                self.server.state.tokens.get(given[-1])
                if given[0].lower()
                in (
                    "bearer",
                    "token",
                )
                else None
            )
        if login is None:
            return self._answer(401, {"message": "Bad credentials"})
        fault = login.get("fault")
        if path == "/user":
            if fault == "user_garbage":
                return self._answer(200, b"<html>Unicorn!</html>", "text/html")
            return self._answer(200, [] if fault == "user_not_an_object" else login["user"])
        if fault == "emails_500":
            return self._answer(500, {"message": "Server Error"})
        self._answer(200, login["emails"])


class Server(ThreadingHTTPServer):
    def __init__(self, port: int, state: StandIn) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    args = p.parse_args()
    Server(args.port, StandIn(args.client_id, args.client_secret)).serve_forever()


if __name__ == "__main__":
    main()
