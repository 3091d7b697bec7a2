"""GET /api/users/me/export: the caller's profile, chats and sent messages, as one document."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from reverb.services import export as export_module
from reverb.services.export import Export
from tests.helpers import assert_problem, direct, group, register, send


async def test_export_of_a_user_with_attachments(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so the document is written across several reads.
    monkeypatch.setattr(export_module, "BATCH", 2)
    ann, ben = await register(client, "ann"), await register(client, "ben")
    team = await group(client, ann, ben, name="Team")
    pair = await direct(client, ann, ben)
    file = await client.post(
        "/api/media",
        files={"file": ("notes.txt", b"my notes", "text/plain")},
        headers=ann["headers"],
    )
    sent = [await send(client, ann, team, f"team {i}") for i in range(3)]
    sent.append(await send(client, ann, pair, "with a file", attachment_ids=[file.json()["id"]]))
    await send(client, ben, team, "ben's, not ann's")

    r = await client.get("/api/users/me/export", headers=ann["headers"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    doc = msgspec.json.decode(r.content, type=Export)  # strictly the documented shape
    assert doc.profile.username == "ann" and doc.profile.email == "ann@example.com"
    assert {c.id for c in doc.chats} == {team, pair}
    assert [m.id for m in doc.messages] == [m["id"] for m in sent]
    assert all(m.sender.id == ann["user"]["id"] for m in doc.messages)
    [attached] = doc.messages[-1].attachments
    assert attached.filename == "notes.txt" and attached.id == file.json()["id"]


async def test_export_of_a_new_user_and_without_a_token(client: httpx.AsyncClient) -> None:
    zed = await register(client, "zed")
    doc = msgspec.json.decode(
        (await client.get("/api/users/me/export", headers=zed["headers"])).content, type=Export
    )
    assert doc.chats == [] and doc.messages == []
    assert_problem(await client.get("/api/users/me/export"), 401, "not_authenticated")
