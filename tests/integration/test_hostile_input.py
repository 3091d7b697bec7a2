"""Strict input everywhere (issue 11, part 3): the hostile corpus (tests/hostile.py) in every
field of every REST endpoint, in JSON bodies, list items, forms, multipart fields, query and path
parameters and cursors. Never a 5xx: a 4xx problem, and nothing stored changes. After each run the
untouched request is sent and must succeed, so the refusals were the hostile value's doing."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from reverb.api.cursors import encode as cursor
from reverb.storage.db import Database
from tests.helpers import PASSWORD, assert_problem, error_fields, group, register, send
from tests.hostile import encode as json_body
from tests.hostile import label, not_text, snapshot, values

Json = dict[str, Any]


@dataclass
class World:
    """Two users in a group with a message (reacted to) and an upload; a third user outside."""

    a: Json
    b: Json
    c: Json
    chat: str
    message: str
    upload: str
    spare: list[Json]  # sessions of `a` whose refresh tokens a request may spend


async def world(client: httpx.AsyncClient) -> World:
    a, b, c = await register(client), await register(client), await register(client)
    chat = await group(client, a, b)
    message = (await send(client, a, chat, "first"))["id"]
    r = await client.put(f"/api/messages/{message}/reactions/👍", headers=b["headers"])
    assert r.status_code == 204, r.text
    r = await client.post(
        "/api/media", files={"file": ("a.txt", b"hello", "text/plain")}, headers=a["headers"]
    )
    assert r.status_code == 201, r.text
    upload = r.json()["id"]
    spare = []
    for _ in range(2):
        r = await client.post(
            "/api/auth/login", json={"username": a["user"]["username"], "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        spare.append(r.json())
    return World(a, b, c, chat, message, upload, spare)


# --- JSON bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyCase:
    name: str
    method: str
    path: Callable[[World], str]
    body: Callable[[World], Json]
    kinds: dict[str, str]  # field -> kind of hostile values it gets
    who: str | None = "a"  # whose token; None: unauthenticated


def me(w: World) -> str:
    return "/api/users/me"


BODY_CASES = [
    BodyCase(
        "register",
        "POST",
        lambda w: "/api/auth/register",
        lambda w: {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password": PASSWORD,
            "display_name": "New",
        },
        {"username": "text", "email": "text", "password": "text", "display_name": "text"},
        who=None,
    ),
    BodyCase(
        "login",
        "POST",
        lambda w: "/api/auth/login",
        lambda w: {"username": w.a["user"]["username"], "password": PASSWORD},
        {"username": "text", "password": "text"},
        who=None,
    ),
    BodyCase(
        "login-email",
        "POST",
        lambda w: "/api/auth/login",
        lambda w: {"email": w.a["user"]["email"], "password": PASSWORD},
        {"email": "text"},
        who=None,
    ),
    BodyCase(
        "refresh",
        "POST",
        lambda w: "/api/auth/refresh",
        lambda w: {"refresh_token": w.spare[0]["refresh_token"]},
        {"refresh_token": "text"},
        who=None,
    ),
    BodyCase(
        "logout",
        "POST",
        lambda w: "/api/auth/logout",
        lambda w: {"refresh_token": w.spare[1]["refresh_token"]},
        {"refresh_token": "text"},
        who=None,
    ),
    BodyCase(
        "profile",
        "PATCH",
        me,
        lambda w: {"display_name": "Renamed", "bio": "a bio"},
        {"display_name": "text", "bio": "text"},
    ),
    BodyCase(
        "direct-chat",
        "POST",
        lambda w: "/api/chats",
        lambda w: {"type": "direct", "user_id": w.c["user"]["id"]},
        {"type": "text", "user_id": "id"},
    ),
    BodyCase(
        "group-chat",
        "POST",
        lambda w: "/api/chats",
        lambda w: {
            "type": "group",
            "name": "G",
            "description": "d",
            "member_ids": [w.b["user"]["id"]],
        },
        {"name": "text", "description": "text", "member_ids": "ids"},
    ),
    BodyCase(
        "chat-patch",
        "PATCH",
        lambda w: f"/api/chats/{w.chat}",
        lambda w: {"name": "N", "description": "D"},
        {"name": "text", "description": "text"},
    ),
    BodyCase(
        "add-member",
        "POST",
        lambda w: f"/api/chats/{w.chat}/members",
        lambda w: {"user_id": w.c["user"]["id"]},
        {"user_id": "id"},
    ),
    BodyCase(
        "set-role",
        "PATCH",
        lambda w: f"/api/chats/{w.chat}/members/{w.b['user']['id']}",
        lambda w: {"role": "admin"},
        {"role": "text"},
    ),
    BodyCase(
        "read",
        "POST",
        lambda w: f"/api/chats/{w.chat}/read",
        lambda w: {"seq": 1},
        {"seq": "int"},
        who="b",
    ),
    BodyCase(
        "delivered",
        "POST",
        lambda w: f"/api/chats/{w.chat}/delivered",
        lambda w: {"seq": 1},
        {"seq": "int"},
        who="b",
    ),
    BodyCase(
        "send",
        "POST",
        lambda w: "/api/messages",
        lambda w: {
            "chat_id": w.chat,
            "content": "hi",
            "client_id": "k-1",
            "reply_to_id": w.message,
            "attachment_ids": [w.upload],
        },
        {
            "chat_id": "id",
            "content": "text",
            "client_id": "text",
            "reply_to_id": "id",
            "attachment_ids": "ids",
        },
    ),
    BodyCase(
        "edit",
        "PATCH",
        lambda w: f"/api/messages/{w.message}",
        lambda w: {"content": "edited"},
        {"content": "text"},
    ),
    # Last: it ends every session of `a`.
    BodyCase(
        "password",
        "POST",
        lambda w: "/api/users/me/password",
        lambda w: {"current_password": PASSWORD, "new_password": "another long secret"},
        {"current_password": "text", "new_password": "text"},
    ),
]


def headers_of(w: World, who: str | None) -> dict[str, str]:
    base = {"content-type": "application/json"}
    session: Json | None = getattr(w, who) if who else None
    return {**base, **(session["headers"] if session else {})}


def assert_refused(r: httpx.Response, value: Any, what: str) -> None:
    assert 400 <= r.status_code < 500, (what, label(value), r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json"), (what, r.headers)
    body = r.json()
    assert body["status"] == r.status_code and body["code"] and body["detail"], body
    if not_text(value):
        assert r.status_code == 422, (what, label(value), r.text[:300])


@pytest.mark.parametrize("case", BODY_CASES, ids=lambda c: c.name)
async def test_hostile_values_in_every_body_field_are_refused(
    client: httpx.AsyncClient, db: Database, case: BodyCase
) -> None:
    w = await world(client)
    before = await snapshot(db)
    url, good, headers = case.path(w), case.body(w), headers_of(w, case.who)
    sent = 0
    for field, kind in case.kinds.items():
        for value in values(kind):
            body = {**good, field: value}
            r = await client.request(case.method, url, content=json_body(body), headers=headers)
            assert_refused(r, value, f"{case.name}.{field}")
            sent += 1
    # Not an object at all, or an object with an unknown field.
    for whole in values("text"):
        if not isinstance(whole, dict):  # `{}` is a patch that changes nothing
            r = await client.request(case.method, url, content=json_body(whole), headers=headers)
            assert_refused(r, whole, f"{case.name} body")
        r = await client.request(
            case.method, url, content=json_body({**good, "extra": whole}), headers=headers
        )
        assert_refused(r, whole, f"{case.name} extra field")
    assert sent > 20
    assert await snapshot(db) == before
    # The same request untouched is served: the refusals were the hostile values' doing.
    r = await client.request(case.method, url, content=json_body(good), headers=headers)
    assert r.status_code < 300, (case.name, r.text)


# --- forms and multipart fields ------------------------------------------------------------------


async def test_hostile_values_in_the_token_form_are_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    w = await world(client)
    before = await snapshot(db)
    good = {"username": w.a["user"]["username"], "password": PASSWORD, "grant_type": "password"}
    for field in good:
        for value in ["\x00", "a\x00b", "x" * 5000, "\x00" * 2000]:
            r = await client.post("/api/auth/token", data={**good, field: value})
            assert_refused(r, value, f"token.{field}")
    assert await snapshot(db) == before
    r = await client.post("/api/auth/token", data=good)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/media"), ("PUT", "/api/users/me/avatar")]
)
async def test_nul_in_a_multipart_field_is_422(
    client: httpx.AsyncClient, db: Database, method: str, path: str
) -> None:
    w = await world(client)
    before = await snapshot(db)
    for name, ctype in [
        (b"a\x00b.png", b"image/png"),
        (b"\x00", b"image/png"),
        (b"a.png", b"image/png\x00"),
    ]:
        boundary = b"hostile-boundary"
        body = (
            b"--" + boundary + b"\r\n"
            b'Content-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
            b"Content-Type: " + ctype + b"\r\n\r\n" + b"data\r\n--" + boundary + b"--\r\n"
        )
        headers = {
            **w.a["headers"],
            "content-type": "multipart/form-data; boundary=" + boundary.decode(),
        }
        r = await client.request(method, path, content=body, headers=headers)
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"file"}, name
    assert await snapshot(db) == before


# --- path parameters -----------------------------------------------------------------------------

# Already percent-encoded: what a client can put in a URL path. NUL, and longer than any name.
PATH_ANY = ["%00", "a%00b", "%00" * 40, "x" * 5000]
PATH_BY_KIND = {
    "id": ["nope", "A" * 32, "0" * 31, "0" * 33, "%ED%A0%80", "%C0%80", "%2e%2e", "%20" * 32],
    "text": [],
}


@dataclass(frozen=True)
class PathCase:
    method: str
    template: str
    kinds: dict[str, str]
    body: Json | None = None


PATH_CASES = [
    PathCase("GET", "/api/users/{user}", {"user": "id"}),
    PathCase("GET", "/api/chats/{chat}", {"chat": "id"}),
    PathCase("PATCH", "/api/chats/{chat}", {"chat": "id"}, {"name": "N"}),
    PathCase("GET", "/api/chats/{chat}/members", {"chat": "id"}),
    PathCase("POST", "/api/chats/{chat}/members", {"chat": "id"}, {"user_id": "USER_C"}),
    PathCase(
        "PATCH", "/api/chats/{chat}/members/{user}", {"chat": "id", "user": "id"}, {"role": "admin"}
    ),
    PathCase("DELETE", "/api/chats/{chat}/members/{user}", {"chat": "id", "user": "id"}),
    PathCase("POST", "/api/chats/{chat}/read", {"chat": "id"}, {"seq": 1}),
    PathCase("POST", "/api/chats/{chat}/delivered", {"chat": "id"}, {"seq": 1}),
    PathCase("GET", "/api/chats/{chat}/events", {"chat": "id"}),
    PathCase("GET", "/api/messages/{chat}", {"chat": "id"}),
    PathCase("PATCH", "/api/messages/{message}", {"message": "id"}, {"content": "e"}),
    PathCase("DELETE", "/api/messages/{message}", {"message": "id"}),
    PathCase(
        "PUT", "/api/messages/{message}/reactions/{emoji}", {"message": "id", "emoji": "text"}
    ),
    PathCase(
        "DELETE", "/api/messages/{message}/reactions/{emoji}", {"message": "id", "emoji": "text"}
    ),
    PathCase("GET", "/media/{upload}", {"upload": "text"}),
    PathCase("GET", "/media/{upload}/thumbnail", {"upload": "text"}),
    PathCase("GET", "/media/avatars/{avatar}", {"avatar": "text"}),
]


@pytest.mark.parametrize("case", PATH_CASES, ids=lambda c: f"{c.method} {c.template}")
async def test_hostile_path_parameters_are_refused(
    client: httpx.AsyncClient, db: Database, case: PathCase
) -> None:
    w = await world(client)
    good = {
        "user": w.b["user"]["id"],
        "chat": w.chat,
        "message": w.message,
        "emoji": quote("👍"),
        "upload": w.upload,
        "avatar": "0" * 32 + ".webp",
    }
    body = case.body and {
        k: (w.c["user"]["id"] if v == "USER_C" else v) for k, v in case.body.items()
    }
    before = await snapshot(db)
    for param, kind in case.kinds.items():
        for value in [*PATH_ANY, *PATH_BY_KIND[kind]]:
            url = case.template.format(**{**good, param: value})
            r = await client.request(case.method, url, json=body, headers=w.a["headers"])
            assert_refused(r, value.replace("%00", "\x00"), url[:80])
    assert await snapshot(db) == before


async def test_over_long_media_names_are_404(client: httpx.AsyncClient) -> None:
    for name in ["a" * 256, "a" * 300 + ".webp", "0" * 4000]:
        for path in [f"/media/avatars/{name}", f"/media/{name}", f"/media/{name}/thumbnail"]:
            assert_problem(await client.get(path), 404, "not_found")


# --- query parameters and cursors ----------------------------------------------------------------

QUERY_BY_KIND = {
    "int": ["%00", "true", "false", "1.5", "-1", "9" * 40, "1e3", "0x10", "x" * 5000, "%EF%BC%91"],
    "text": ["%00", "a%00b", "x" * 5000, "%20%20"],
    "id": ["%00", "nope", "A" * 32, "0" * 33, "%ED%A0%80", "x" * 5000],
    "cursor": ["%00", "!!", "a.b", "x" * 5000, "a" * 201, "%ED%A0%80"],
}


def hostile_cursors(w: World) -> list[str]:
    """Well-formed base64url that decodes to what no page of this server ever gave out."""
    raw = [
        b'"\\ud800"',
        b'["2020-01-01T00:00:00+00:00", "\\udc00"]',
        b"not json",
        b"\xff\xfe",
        b"[" * 100 + b"]" * 100,
    ]
    return [
        cursor(["0001-01-01T00:00:00+14:00", w.chat]),
        cursor(["9999-12-31T23:59:59-14:00", w.chat]),
        cursor(["2020-01-01T00:00:00", w.chat]),
        cursor(["not a date", w.chat]),
        cursor(["2020-01-01T00:00:00+00:00", "x\x00"]),
        cursor(["2020-01-01T00:00:00+00:00", "nope"]),
        cursor(["2020-01-01T00:00:00+00:00", 5]),
        cursor(["2020-01-01T00:00:00+00:00"]),
        cursor("a\x00b"),
        cursor("UPPER"),
        cursor(2**63 - 1),
        cursor(-1),
        cursor(10_001),
        cursor(1.5),
        cursor(True),
        cursor(None),
        cursor([]),
        cursor({"a": 1}),
        *(base64.urlsafe_b64encode(r).decode().rstrip("=") for r in raw),
    ]


@dataclass(frozen=True)
class QueryCase:
    path: str
    good: dict[str, str]
    kinds: dict[str, str]


QUERY_CASES = [
    QueryCase("/api/chats", {"limit": "5"}, {"limit": "int", "cursor": "cursor"}),
    QueryCase(
        "/api/users",
        {"search": "user", "limit": "5"},
        {"search": "text", "limit": "int", "cursor": "cursor"},
    ),
    QueryCase(
        "/api/messages/search",
        {"q": "first", "limit": "5"},
        {"q": "text", "chat_id": "id", "limit": "int", "cursor": "cursor"},
    ),
    QueryCase(
        "/api/messages/{chat}",
        {"limit": "5"},
        {"before": "int", "after": "int", "limit": "int"},
    ),
    QueryCase("/api/chats/{chat}/events", {"limit": "5"}, {"after": "int", "limit": "int"}),
]


@pytest.mark.parametrize("case", QUERY_CASES, ids=lambda c: c.path)
async def test_hostile_query_parameters_and_cursors_are_refused(
    client: httpx.AsyncClient, db: Database, case: QueryCase
) -> None:
    w = await world(client)
    path = case.path.format(chat=w.chat)
    before = await snapshot(db)
    for param, kind in case.kinds.items():
        hostile = QUERY_BY_KIND[kind]
        if kind == "cursor":
            hostile = [*hostile, *hostile_cursors(w)]
        for value in hostile:
            query = "&".join(f"{k}={quote(v)}" for k, v in case.good.items() if k != param)
            r = await client.get(f"{path}?{query}&{param}={value}", headers=w.a["headers"])
            assert_refused(r, value.replace("%00", "\x00"), f"{path} {param}={value[:40]}")
            if kind == "cursor":
                assert error_fields(r.json()) == {"cursor"}, r.text
    assert await snapshot(db) == before
    r = await client.get(path, params=case.good, headers=w.a["headers"])
    assert r.status_code == 200, r.text


# --- the schema states the rules ---------------------------------------------------------------


def request_schemas(spec: Json) -> list[tuple[str, Json]]:
    """Every schema a request is checked against: parameters and request bodies, with their
    $refs and combinators followed down to the leaves."""
    components = spec["components"]["schemas"]
    found: list[tuple[str, Json]] = []

    def walk(where: str, schema: Json) -> None:
        if "$ref" in schema:
            walk(where, components[schema["$ref"].rsplit("/", 1)[-1]])
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(schema.get(key, [])):
                walk(f"{where}|{i}", sub)
        for name, sub in schema.get("properties", {}).items():
            walk(f"{where}.{name}", sub)
        if "items" in schema:
            walk(f"{where}[]", schema["items"])
        if isinstance(schema.get("additionalProperties"), dict):
            walk(f"{where}{{}}", schema["additionalProperties"])
        if "type" in schema:
            found.append((where, schema))

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                walk(f"{method.upper()} {path} {p['in']}:{p['name']}", p["schema"])
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                walk(f"{method.upper()} {path} {media}", content["schema"])
    return found


async def test_the_schema_states_the_rules_of_every_request_field(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    schemas = request_schemas(spec)
    loose = []
    for where, s in schemas:
        stated = {"pattern", "enum", "const"} & set(s) or s.get("format") == "binary"  # a file
        if s["type"] == "string" and not stated:
            loose.append(where)
        if s["type"] == "integer" and not {"minimum", "maximum"} <= set(s):
            loose.append(where)
        if s["type"] == "array" and "maxItems" not in s:
            loose.append(where)
        if s["type"] in ("number", "boolean"):  # no request takes one
            loose.append(where)
    assert len(schemas) > 50
    assert loose == []
    # Ids as the server makes them; text without NUL or unpaired surrogates.
    by_place = dict(schemas)
    assert by_place["GET /api/chats/{chat_id} path:chat_id"]["pattern"] == "^[0-9a-f]{32}$"
    content = by_place["POST /api/messages application/json.content"]
    assert content["pattern"] == "^[^\\u0000\\ud800-\\udfff]*$"
