"""The OpenAPI document describes what the API really answers: every response schema it names
is a component of the document, and real answers fit the schemas their routes name (the
schemas are generated from the same structs that encode the answers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from tests.helpers import group, register, send

Json = Any
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REF = "#/components/schemas/"
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def refs(node: Json) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def mismatch(document: Json, schema: Json, value: Json, at: str = "$") -> str | None:
    """Why `value` does not fit `schema` (None: it fits). Covers what the API's schemas use."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return mismatch(document, document["components"]["schemas"][name], value, at)
    if "anyOf" in schema:
        reasons = [mismatch(document, option, value, at) for option in schema["anyOf"]]
        return None if None in reasons else f"{at}: fits no option ({'; '.join(map(str, reasons))})"
    kind = schema.get("type")
    # JSON true is not an integer, though Python's bool is an int.
    if kind is not None and (
        not isinstance(value, TYPES[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        return f"{at}: {value!r} is not {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{at}: {value!r} not in {schema['enum']}"
    if schema.get("format") == "date-time" and not TIMESTAMP.fullmatch(value):
        return f"{at}: {value!r} is not RFC 3339 with milliseconds and Z"
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            if reason := mismatch(document, schema["items"], item, f"{at}[{n}]"):
                return reason
    if isinstance(value, dict) and "properties" in schema:
        fields = schema["properties"]
        if unknown := value.keys() - fields.keys():
            return f"{at}: fields not in the schema: {sorted(unknown)}"
        if missing := set(schema.get("required", ())) - value.keys():
            return f"{at}: required fields missing: {sorted(missing)}"
        for name, item in value.items():
            if reason := mismatch(document, fields[name], item, f"{at}.{name}"):
                return reason
    return None


def assert_documented(document: Json, method: str, path: str, r: httpx.Response) -> None:
    """`r` fits the schema the document gives for its route and status."""
    responses = document["paths"][path][method]["responses"]
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    assert "$ref" in schema, schema  # a named component, not an inline copy of a shape
    reason = mismatch(document, schema, r.json())
    assert reason is None, f"{method.upper()} {path} {r.status_code}: {reason}"


async def test_every_schema_the_document_names_is_one_of_its_components(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/api/openapi.json")).json()
    components = document["components"]["schemas"]
    named = set(refs(document))
    assert named, "the document names no schemas"
    for ref in named:
        assert ref.startswith(REF) and ref.removeprefix(REF) in components, ref
    # The wire shapes are generated from the structs, with the contract's timestamp format.
    view = components["MessageView"]
    assert view["properties"]["created_at"] == {"type": "string", "format": "date-time"}
    assert components["MessageCreated"]["properties"]["message"] == {"$ref": REF + "MessageView"}
    # Every answer with a body names its schema (a plain list, its items' schema).
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    if status.startswith("2") and media == "application/json":
                        schema = content.get("schema", {})
                        named = schema.get("items", {}) if schema.get("type") == "array" else schema
                        assert "$ref" in named, (method, path, status)


async def test_real_answers_fit_their_documented_schemas(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    r = await client.post(
        "/api/auth/register",
        json={"username": "schema_a", "email": "schema_a@example.com", "password": "pw-123456"},
    )
    assert r.status_code == 201
    assert_documented(document, "post", "/api/auth/register", r)
    a = r.json() | {"headers": {"Authorization": f"Bearer {r.json()['access_token']}"}}
    b = await register(client)
    chat = await group(client, a, b)
    first = await send(client, a, chat, "first")
    r = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "reply", "reply_to_id": first["id"], "client_id": "k"},
        headers=b["headers"],
    )
    assert r.status_code == 201
    assert_documented(document, "post", "/api/messages", r)
    reply = r.json()
    r = await client.post(
        "/api/messages",
        json={"chat_id": chat, "content": "reply", "client_id": "k"},
        headers=b["headers"],
    )
    assert r.status_code == 200
    assert_documented(document, "post", "/api/messages", r)
    put = await client.put(f"/api/messages/{first['id']}/reactions/👍", headers=b["headers"])
    assert put.status_code == 204
    r = await client.patch(
        f"/api/messages/{reply['id']}", json={"content": "edited"}, headers=b["headers"]
    )
    assert r.status_code == 200 and r.json()["edited_at"]
    assert_documented(document, "patch", "/api/messages/{message_id}", r)

    reads = [
        ("/api/users/me", "/api/users/me", {}),
        (f"/api/users/{b['user']['id']}", "/api/users/{user_id}", {}),
        ("/api/users", "/api/users", {"search": "schema"}),
        ("/api/chats", "/api/chats", {}),
        (f"/api/chats/{chat}", "/api/chats/{chat_id}", {}),
        (f"/api/chats/{chat}/members", "/api/chats/{chat_id}/members", {}),
        (f"/api/chats/{chat}/events", "/api/chats/{chat_id}/events", {}),
        (f"/api/messages/{chat}", "/api/messages/{chat_id}", {}),
        ("/api/messages/search", "/api/messages/search", {"q": "first"}),
    ]
    for url, path, params in reads:
        r = await client.get(url, params=params, headers=a["headers"])
        assert r.status_code == 200, (url, r.text)
        assert_documented(document, "get", path, r)
    # What the reads covered: a chat with its last message, reactions, a reply, an edit, and an
    # event log of several kinds.
    listed = (await client.get(f"/api/chats/{chat}", headers=a["headers"])).json()
    assert listed["last_message"]["content"] == "edited"
    log = (await client.get(f"/api/chats/{chat}/events", headers=a["headers"])).json()["items"]
    assert {e["type"] for e in log} >= {"message.created", "reaction.updated", "message.updated"}


def test_a_wrong_answer_does_not_fit() -> None:
    """The checker above can fail: the answers it passes are checked for real."""
    document = {
        "components": {
            "schemas": {
                "T": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "n": {"type": "integer"},
                        "kind": {"enum": ["x"]},
                    },
                    "required": ["at", "n"],
                }
            }
        }
    }
    ref = {"$ref": REF + "T"}
    good = {"at": "2026-01-02T03:04:05.678Z", "n": 1, "kind": "x"}
    assert mismatch(document, ref, good) is None
    for bad in (
        good | {"at": "2026-01-02T03:04:05.678000+00:00"},
        good | {"n": True},
        good | {"kind": "y"},
        good | {"extra": 1},
        {"at": good["at"]},
    ):
        assert mismatch(document, ref, bad) is not None, bad
