"""Authorization matrix: every chat and message endpoint against every kind of caller.

Each case builds the same world: `owner` creates a group with `admin`, `member`, `former` and
`target`, promotes `admin` to admin; `former` leaves; the owner sends one message. `outsider`
and `newcomer` are registered but never join. Then the case's caller makes its one request and
the test checks the exact status (and the problem `code` of a 4xx). A refused request leaves the
chat exactly as it was, and a non-member's 404 is indistinguishable from the 404 for an id that
does not exist, so ids cannot be probed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, events, group, register, send

Session = dict[str, Any]
Json = dict[str, Any]

MEMBERS = ("owner", "admin", "member")
NON_MEMBERS = ("former", "outsider")
CALLERS = (*MEMBERS, *NON_MEMBERS, "anonymous")
ANY_MEMBER = frozenset(MEMBERS)
MANAGERS = frozenset({"owner", "admin"})
OWNER = frozenset({"owner"})
CHAT_404 = "chat_not_found"
MESSAGE_404 = "message_not_found"
GHOST = "0" * 32  # a well-formed id that does not exist
EMOJI = "👍"


@dataclass(frozen=True)
class World:
    chat: str
    message: str
    seq: int
    users: dict[str, Session]

    def id(self, who: str) -> str:
        return str(self.users[who]["user"]["id"])


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # placeholders: {chat}, {message}, {target}, {emoji}
    ok: int  # the status of a caller who is allowed
    allowed: frozenset[str] = ANY_MEMBER
    # The 404 code for a non-member; None: not chat-addressed, anyone signed in is allowed.
    missing: str | None = CHAT_404
    json: Callable[[World], Json] | None = None
    params: Callable[[World], dict[str, str]] | None = None
    # For endpoints open to anyone signed in: whether the world's chat shows in the answer.
    visible: Callable[[World, Json], bool] | None = None


ENDPOINTS: dict[str, Endpoint] = {
    "list_chats": Endpoint(
        "GET",
        "/api/chats",
        200,
        missing=None,
        visible=lambda w, b: w.chat in {c["id"] for c in b["items"]},
    ),
    "create_chat": Endpoint(
        "POST", "/api/chats", 201, missing=None, json=lambda w: {"type": "group", "name": "Side"}
    ),
    "get_chat": Endpoint("GET", "/api/chats/{chat}", 200),
    "patch_chat": Endpoint(
        "PATCH", "/api/chats/{chat}", 200, MANAGERS, json=lambda w: {"name": "Renamed"}
    ),
    "list_members": Endpoint("GET", "/api/chats/{chat}/members", 200),
    "add_member": Endpoint(
        "POST",
        "/api/chats/{chat}/members",
        201,
        MANAGERS,
        json=lambda w: {"user_id": w.id("newcomer")},
    ),
    "promote_member": Endpoint(
        "PATCH", "/api/chats/{chat}/members/{target}", 200, OWNER, json=lambda w: {"role": "admin"}
    ),
    "remove_member": Endpoint("DELETE", "/api/chats/{chat}/members/{target}", 204, MANAGERS),
    "mark_read": Endpoint("POST", "/api/chats/{chat}/read", 204, json=lambda w: {"seq": w.seq}),
    "mark_delivered": Endpoint(
        "POST", "/api/chats/{chat}/delivered", 204, json=lambda w: {"seq": w.seq}
    ),
    "list_events": Endpoint("GET", "/api/chats/{chat}/events", 200),
    "history": Endpoint("GET", "/api/messages/{chat}", 200),
    "send_message": Endpoint(
        "POST", "/api/messages", 201, json=lambda w: {"chat_id": w.chat, "content": "hello"}
    ),
    "search_chat": Endpoint(
        "GET", "/api/messages/search", 200, params=lambda w: {"q": "word", "chat_id": w.chat}
    ),
    "search_all": Endpoint(
        "GET",
        "/api/messages/search",
        200,
        missing=None,
        params=lambda w: {"q": "word"},
        visible=lambda w, b: w.message in {m["id"] for m in b["items"]},
    ),
    "edit_message": Endpoint(
        "PATCH", "/api/messages/{message}", 200, OWNER, MESSAGE_404, lambda w: {"content": "edit"}
    ),
    "delete_message": Endpoint("DELETE", "/api/messages/{message}", 204, MANAGERS, MESSAGE_404),
    "add_reaction": Endpoint(
        "PUT", "/api/messages/{message}/reactions/{emoji}", 204, missing=MESSAGE_404
    ),
    "remove_reaction": Endpoint(
        "DELETE", "/api/messages/{message}/reactions/{emoji}", 204, missing=MESSAGE_404
    ),
}


def expected(ep: Endpoint, role: str) -> tuple[int, str | None]:
    """The status and problem code (None for a success) the rules give `role` on `ep`."""
    if role == "anonymous":
        return 401, "not_authenticated"
    if role in NON_MEMBERS:
        return (404, ep.missing) if ep.missing else (ep.ok, None)
    return (ep.ok, None) if role in ep.allowed else (403, "forbidden")


async def build_world(client: httpx.AsyncClient) -> World:
    names = ("owner", "admin", "member", "former", "target", "outsider", "newcomer")
    users = {name: await register(client, name) for name in names}
    owner = users["owner"]
    chat = await group(client, owner, *(users[n] for n in ("admin", "member", "former", "target")))
    r = await client.patch(
        f"/api/chats/{chat}/members/{users['admin']['user']['id']}",
        json={"role": "admin"},
        headers=owner["headers"],
    )
    assert r.status_code == 200, r.text
    former = users["former"]
    r = await client.delete(
        f"/api/chats/{chat}/members/{former['user']['id']}", headers=former["headers"]
    )
    assert r.status_code == 204, r.text
    message = await send(client, owner, chat, "the word of the day")
    return World(chat, str(message["id"]), int(message["seq"]), users)


async def call(client: httpx.AsyncClient, w: World, ep: Endpoint, role: str) -> httpx.Response:
    path = ep.path.format(chat=w.chat, message=w.message, target=w.id("target"), emoji=EMOJI)
    return await client.request(
        ep.method,
        path,
        json=ep.json(w) if ep.json else None,
        params=ep.params(w) if ep.params else None,
        headers=w.users[role]["headers"] if role != "anonymous" else {},
    )


async def snapshot(client: httpx.AsyncClient, w: World) -> list[Any]:
    """Everything the owner can see of the chat: its log, the chat, its members, its history."""
    owner = w.users["owner"]
    state: list[Any] = [await events(client, owner, w.chat)]
    for path in (f"/api/chats/{w.chat}", f"/api/chats/{w.chat}/members", f"/api/messages/{w.chat}"):
        r = await client.get(path, headers=owner["headers"])
        assert r.status_code == 200, r.text
        state.append(r.json())
    return state


@pytest.mark.parametrize(("endpoint", "role"), [(e, r) for e in ENDPOINTS for r in CALLERS])
async def test_authz(client: httpx.AsyncClient, endpoint: str, role: str) -> None:
    ep = ENDPOINTS[endpoint]
    w = await build_world(client)
    status, code = expected(ep, role)
    before = await snapshot(client, w) if code else None

    r = await call(client, w, ep, role)

    if code is None:
        assert r.status_code == status, r.text
        if ep.visible is not None:
            assert ep.visible(w, r.json()) == (role in MEMBERS), r.text
        return
    body = assert_problem(r, status, code)
    assert await snapshot(client, w) == before, "a refused request changed the chat"
    if status == 404:
        ghost = await call(client, dataclasses.replace(w, chat=GHOST, message=GHOST), ep, role)
        assert ghost.status_code == 404, ghost.text
        assert ghost.json() == body
