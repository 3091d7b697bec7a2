"""The web client at `/` in a real browser (Chromium through Playwright) against a real
`reverb serve`: two people register, find each other and chat live both ways with typing, read
marks and an image; one goes offline and catches up; a reload keeps the session and the unsent
outbox. Every page talks to Reverb only and logs no console error. Screenshots of the main
views go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Route,
    WebSocketRoute,
    async_playwright,
    expect,
)

from reverb.config import Settings
from tests import helpers
from tests.conftest import UNLIMITED
from tests.e2e import social_site as social
from tests.e2e.browser import MISSING, find_browser, launch_args
from tests.e2e.server import Running, reverb_process, server_env
from tests.helpers import PASSWORD
from tests.ports import free_port

# One browser for the module, so its tests share the module's event loop.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# The OpenID provider, its own process, as the social login tests run it.
provider = social.openid_provider

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Long enough for a loaded 2-core machine running the suite; every wait ends at its condition.
WAIT_MS = 15_000
expect.set_options(timeout=WAIT_MS)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        path = find_browser(playwright.chromium.executable_path)
        if path is None:
            pytest.fail(MISSING, pytrace=False)
        b = await playwright.chromium.launch(executable_path=path, args=launch_args())
        yield b
        await b.close()


# The page must work within the limits a real server keeps (a catch-up's receipts, a burst of
# sends, typing), so its server runs with the default rate limits, not the suite's unlimited ones.
DEFAULT_LIMITS = {rule: str(Settings.model_fields[rule].default) for rule in UNLIMITED}


@pytest.fixture
def oauth() -> bool:
    """Whether the test's server offers a social login (a test sets it by parametrizing)."""
    return False


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, oauth: bool
) -> Iterator[Running]:
    port = free_port()
    env = server_env(database_url, media_dir=str(tmp_path / "media"), **DEFAULT_LIMITS)
    if oauth:
        # The OpenID provider of the social login tests; the page itself is the redirect URI.
        page = f"http://127.0.0.1:{port}/"
        providers = [
            {
                "name": "mock",
                "client_id": social.CLIENT_ID,
                "client_secret": "s3cret",
                "issuer": request.getfixturevalue("provider"),
                "display_name": "Mock ID",
            }
        ]
        env |= {
            "OAUTH_PROVIDERS": json.dumps(providers),
            "OAUTH_REDIRECT_URIS": page,
            "PUBLIC_URL": page.rstrip("/"),
        }
    with reverb_process(tmp_path, env, port=port) as s:
        yield s


@dataclass
class Person:
    name: str
    context: BrowserContext
    page: Page
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def failed(self, url: str, failure: str | None) -> None:
        # A request the browser itself cancels when the page navigates away (a reload) is not
        # a failure of the page.
        if failure != "net::ERR_ABORTED":
            self.errors.append(f"{url}: {failure}")

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"web-client-{name}.png")


People = Callable[[str], Awaitable["Person"]]


@pytest_asyncio.fixture(loop_scope="module")
async def person(server: Running, browser: Browser) -> AsyncIterator[People]:
    """A person with a browser context of their own (their own storage, as a second browser
    window would have). At the end: no page asked anything of another origin, or logged an
    error."""
    people: list[Person] = []

    async def make(name: str) -> Person:
        context = await browser.new_context(
            base_url=server.url, viewport={"width": 1100, "height": 720}
        )
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        p = Person(name, context, page)
        page.on("request", lambda r: p.urls.append(r.url))
        page.on("websocket", lambda ws: p.urls.append(ws.url))
        page.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: p.errors.append(str(e)))
        page.on("requestfailed", lambda r: p.failed(r.url, r.failure))
        people.append(p)
        return p

    yield make
    ours = urlsplit(server.url).netloc
    for p in people:
        await p.context.close()
        foreign = [
            u for u in p.urls if urlsplit(u).netloc != ours and not u.startswith(("data:", "blob:"))
        ]
        assert foreign == [], f"{p.name}'s page asked another origin"
        assert p.urls, "the recorder saw the page's requests"
        assert p.errors == [], f"{p.name}'s page logged errors"


async def register(p: Person) -> None:
    page = p.page
    await page.goto("/")
    await page.get_by_role("button", name="Create an account").click()
    form = page.locator("#register-form")
    await form.get_by_label("Username").fill(p.name)
    await form.get_by_label("Display name").fill(p.name.title())
    await form.get_by_label("Email").fill(f"{p.name}@example.com")
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Create account").click()
    await expect(page.locator("#me-name")).to_have_text(p.name.title())


async def log_in(p: Person) -> None:
    """Log in from the login form, with the username."""
    login = p.page.locator("#login-form")
    await login.get_by_label("Email or username").fill(p.name)
    await login.get_by_label("Password").fill(PASSWORD)
    await login.get_by_role("button", name="Log in").click()


async def open_direct(p: Person, other: str) -> None:
    """Find `other` by name and open the direct chat with them."""
    await p.page.get_by_label("Search messages and people").fill(other)
    await p.page.locator("#people").get_by_role("button", name=re.compile(f"@{other}")).click()
    await expect(p.page.locator("#chat-title")).to_have_text(other.title())


async def say(p: Person, text: str) -> None:
    box = p.page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


def bubbles(p: Person) -> Locator:
    return p.page.locator("#messages .msg .text")


def png() -> bytes:
    """A 256 x 256 picture: three gradients, so a thumbnail shows it is the real image."""
    g = Image.linear_gradient("L")
    buf = io.BytesIO()
    Image.merge("RGB", (g, g.rotate(90), Image.new("L", g.size, 200))).save(buf, "PNG")
    return buf.getvalue()


async def test_two_people_chat_live_both_ways(person: People) -> None:
    ann, bob = await person("ann"), await person("bob")
    await ann.page.goto("/")
    await expect(ann.page.get_by_role("heading", name="Log in")).to_be_visible()
    await ann.shot("login")
    await register(ann)
    await register(bob)

    await open_direct(ann, "bob")
    await say(ann, "Hi Bob!")
    mine = ann.page.locator("#messages .msg.mine").last
    await expect(mine).to_have_attribute("data-status", re.compile("sent|delivered|read"))

    # Bob sees the chat arrive live, unread, and opens it: Ann's mark turns to read.
    item = bob.page.locator("#chats .chat-item").first
    await expect(item).to_contain_text("Ann")
    await expect(item.locator(".badge")).to_have_text("1")
    await expect(item).to_contain_text("Hi Bob!")
    await item.click()
    await expect(bubbles(bob)).to_have_text(["Hi Bob!"])
    await expect(item.locator(".badge")).to_have_count(0)
    await expect(mine).to_have_attribute("data-status", "read")

    # Typing shows on the other side; the answer arrives live.
    await bob.page.get_by_label("Message", exact=True).press_sequentially("Hello")
    await expect(ann.page.locator("#typing")).to_have_text("Bob is typing…")
    await bob.page.get_by_label("Message", exact=True).press("Enter")
    await expect(bubbles(ann)).to_have_text(["Hi Bob!", "Hello"])
    await expect(ann.page.locator("#typing")).to_have_text("")
    await expect(bob.page.locator("#messages .msg.mine").last).to_have_attribute(
        "data-status", "read"
    )

    # An image: uploaded with progress, sent, and shown to Bob as the server's thumbnail.
    await ann.page.locator("#file").set_input_files(
        {"name": "sunset.png", "mimeType": "image/png", "buffer": png()}
    )
    await expect(ann.page.locator("#uploads .upload.done")).to_have_count(1)
    await say(ann, "Look at this")
    thumb = bob.page.locator("#messages .thumb img")
    await expect(thumb).to_have_count(1)
    await expect(thumb).to_have_attribute("src", re.compile(r"^/media/.+/thumbnail$"))
    await expect(thumb).to_have_attribute("alt", "sunset.png")
    await bob.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await thumb.element_handle()
    )
    await expect(bubbles(bob)).to_have_text(["Hi Bob!", "Hello", "Look at this"])

    await expect(ann.page.locator("#messages .msg.mine").last).to_have_attribute(
        "data-status", "read"
    )
    await ann.shot("chat")

    # A reaction from Bob reaches Ann.
    last = bob.page.locator("#messages .msg").last
    await last.hover()
    await last.get_by_role("button", name="React", exact=True).click()
    await last.get_by_role("button", name="React 👍").click()
    await expect(ann.page.locator("#messages .msg").last.locator(".chip")).to_have_text("👍 1")

    await bob.page.locator("#theme").click()
    await expect(bob.page.locator("html")).to_have_attribute("data-theme", "dark")
    await bob.shot("chat-dark")


async def test_offline_person_catches_up_on_everything_in_order(person: People) -> None:
    ann, bob = await person("ann"), await person("bob")
    await register(ann)
    await register(bob)
    await open_direct(ann, "bob")
    await say(ann, "before")
    await bob.page.locator("#chats .chat-item").first.click()
    await expect(bubbles(bob)).to_have_text(["before"])

    await bob.context.set_offline(True)
    await expect(bob.page.locator("#offline")).to_be_visible()
    await expect(bob.page.locator("#offline")).to_contain_text("offline")
    await bob.shot("offline")
    sent = [f"message {i:02d}" for i in range(1, 21)]
    for text in sent:
        await say(ann, text)
    # All 20 stored while Bob is away: none still sending, and none shown to him yet.
    await expect(ann.page.locator("#messages .msg.pending")).to_have_count(0)
    await expect(bubbles(ann)).to_have_text(["before", *sent])
    await expect(bubbles(bob)).to_have_text(["before"])

    await bob.context.set_offline(False)
    await expect(bob.page.locator("#offline")).to_be_hidden()
    await expect(bubbles(bob)).to_have_text(["before", *sent])
    # Each once: a marker sent after the catch-up lands after exactly those 21.
    await say(ann, "after")
    await expect(bubbles(bob)).to_have_text(["before", *sent, "after"])


async def test_reload_keeps_session_and_unsent_outbox(person: People, server: Running) -> None:
    ann, bob = await person("ann"), await person("bob")
    await register(bob)
    # Ann's socket reaches the server only when `connected` says so; until then the page has an
    # open socket that never answers, so what she sends stays in her outbox.
    connected = False

    async def gate(ws: WebSocketRoute) -> None:
        if connected:
            ws.connect_to_server()

    await ann.page.route_web_socket(re.compile(r"/ws$"), gate)
    await register(ann)
    await open_direct(ann, "bob")
    await say(ann, "sent while cut off")
    pending = ann.page.locator("#messages .msg.pending")
    await expect(pending).to_have_count(1)

    await ann.page.reload()
    await expect(ann.page.locator("#me-name")).to_have_text("Ann")
    await ann.page.locator("#chats .chat-item").first.click()
    await expect(pending).to_have_count(1)
    await expect(pending.locator(".text")).to_have_text("sent while cut off")

    connected = True
    await ann.page.reload()
    await ann.page.locator("#chats .chat-item").first.click()
    await expect(ann.page.locator("#messages .msg.mine")).to_have_attribute(
        "data-status", re.compile("sent|delivered|read")
    )
    await bob.page.locator("#chats .chat-item").first.click()
    await expect(bubbles(bob)).to_have_text(["sent while cut off"])
    # Stored once, however often it was offered.
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
        h = helpers.bearer(login.json()["access_token"])
        chat = (await http.get("/api/chats", headers=h)).json()["items"][0]
        history = (await http.get(f"/api/messages/{chat['id']}", headers=h)).json()["items"]
    assert [m["content"] for m in history] == ["sent while cut off"]


async def act_on(p: Person, text: str, action: str) -> None:
    """Use a message's action button (shown on hover or focus), for the message reading `text`."""
    msg = p.page.locator("#messages .msg").filter(has=p.page.get_by_text(text, exact=True))
    await msg.hover()
    await msg.get_by_role("button", name=action, exact=True).click()


async def test_groups_replies_edits_deletions_search_and_log_in_again(
    person: People,
) -> None:
    ann, bob = await person("ann"), await person("bob")
    await register(ann)
    await register(bob)

    await ann.page.get_by_role("button", name="New group").click()
    dialog = ann.page.get_by_role("dialog", name="New group")
    await dialog.get_by_label("Name").fill("Trip")
    await dialog.get_by_label("Add people").fill("bob")
    await dialog.get_by_role("button", name=re.compile("@bob")).click()
    await expect(dialog.locator("#group-picked")).to_have_text("Members: Bob")
    await dialog.get_by_role("button", name="Create group").click()
    await expect(ann.page.locator("#chat-title")).to_have_text("Trip")
    await expect(ann.page.locator("#chat-sub")).to_have_text("2 members")

    # Members and roles: the owner makes Bob an admin.
    await ann.page.get_by_role("button", name="Members").click()
    members = ann.page.get_by_role("dialog", name="Trip: members")
    await expect(members.locator("#members li")).to_have_count(2)
    await expect(members.locator("#members li").filter(has_text="(you)")).to_contain_text("owner")
    await members.get_by_label("Role of Bob").select_option("admin")
    await expect(members.get_by_label("Role of Bob")).to_have_value("admin")
    await ann.shot("members")
    await members.get_by_role("button", name="Close").click()

    await bob.page.locator("#chats .chat-item").filter(has_text="Trip").click()
    await say(ann, "Where shall we go?")
    await expect(bubbles(bob)).to_have_text(["Where shall we go?"])

    # A reply quotes what it answers.
    await act_on(bob, "Where shall we go?", "Reply")
    await expect(bob.page.locator("#context-text")).to_have_text(
        "Replying to Ann: Where shall we go?"
    )
    await say(bob, "The sea")
    reply = ann.page.locator("#messages .msg").filter(has_text="The sea")
    await expect(reply.locator(".quote")).to_have_text("Ann: Where shall we go?")
    await expect(reply.locator(".author")).to_have_text("Bob")

    # An edit and a deletion reach the other side live.
    await act_on(ann, "Where shall we go?", "Edit")
    await say(ann, "Where shall we go in May?")
    edited = bob.page.locator("#messages .msg").first
    await expect(edited.locator(".text")).to_have_text("Where shall we go in May?")
    await expect(edited.locator(".meta")).to_contain_text("edited")
    await act_on(bob, "The sea", "Delete")
    await expect(ann.page.locator("#messages .msg.deleted")).to_have_text(
        re.compile("Message deleted")
    )

    # Search finds the edited message and opens its chat.
    await bob.page.locator("#chats .chat-item").first.focus()
    await ann.page.get_by_label("Search messages and people").fill("May")
    found = ann.page.locator("#found").get_by_role("button")
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("Where shall we go in May?")
    await found.click()
    await expect(ann.page.locator("#chat-title")).to_have_text("Trip")

    # Log out, and back in with the username.
    await bob.page.get_by_role("button", name="Log out").click()
    await log_in(bob)
    await expect(bob.page.locator("#chats .chat-item").filter(has_text="Trip")).to_have_count(1)


async def test_history_scrolls_back_to_the_first_message(person: People, server: Running) -> None:
    ann = await person("ann")
    await register(ann)
    # More than the 50 a page of history holds, from three people: each stays within the
    # default message rate limit (a burst of 40).
    texts = [f"old {i:02d}" for i in range(1, 61)]
    async with httpx.AsyncClient(base_url=server.url) as http:
        senders = [await helpers.register(http, name) for name in ("bob", "cat", "dan")]
        found = await http.get(
            "/api/users", params={"search": "ann"}, headers=senders[0]["headers"]
        )
        ann_user = {"user": found.json()["items"][0]}
        chat_id = await helpers.group(http, senders[0], ann_user, *senders[1:], name="Old times")
        for i, text in enumerate(texts):
            await helpers.send(http, senders[i % 3], chat_id, text)

    await ann.page.locator("#chats .chat-item").first.click()
    await expect(bubbles(ann)).to_have_count(50)
    await expect(bubbles(ann).last).to_have_text("old 60")
    await ann.page.locator("#scroller").evaluate("el => el.scrollTo(0, 0)")
    await expect(bubbles(ann)).to_have_text(texts)
    await expect(ann.page.get_by_role("button", name="Load earlier messages")).to_be_hidden()


async def test_lists_longer_than_a_page_show_everything(person: People, server: Running) -> None:
    # Past the server's pages: 52 chats (50 a page), 21 people and 21 messages found (20 a
    # page). The chats come from 21 people, a few each, within the default write limit.
    async with httpx.AsyncClient(base_url=server.url) as http:
        ann_session = await helpers.register(http, "ann", display_name="Ann")
        pals = [await helpers.register(http, f"pal{i:02d}") for i in range(1, 22)]
        everyone = await helpers.group(http, pals[0], ann_session, *pals[1:], name="Everyone")
        clubs = {}
        for i in range(1, 52):
            name, owner = f"Club {i:02d}", pals[i % len(pals)]
            clubs[name] = (owner, await helpers.group(http, owner, ann_session, name=name))
        needles = [f"needle {i:02d}" for i in range(1, 22)]
        for text in needles:
            await helpers.send(http, pals[0], everyone, text)

    ann = await person("ann")

    async def while_listing(route: Route) -> None:
        # Just before the second page is read, the oldest chat, due on it, gets a message:
        # it moves ahead of the page's cursor.
        async with httpx.AsyncClient(base_url=server.url) as http:
            await helpers.send(http, *clubs["Club 01"], "while you were loading")
        await route.continue_()

    await ann.page.route(re.compile(r"/api/chats\?.*cursor="), while_listing, times=1)
    await ann.page.goto("/")
    await log_in(ann)
    # Most recent activity first: each of the 52, once.
    titles = ann.page.locator("#chats .chat-item strong")
    await expect(titles).to_have_text(["Club 01", "Everyone", *reversed(list(clubs)[1:])])

    # A live message in the oldest chat brings it to the top, once.
    async with httpx.AsyncClient(base_url=server.url) as http:
        await helpers.send(http, *clubs["Club 02"], "back again")
    await expect(titles.first).to_have_text("Club 02")
    await expect(titles).to_have_text(
        ["Club 02", "Club 01", "Everyone", *reversed(list(clubs)[2:])]
    )

    # Search: a page of each, and "More" brings the rest, the focus on the first it brought.
    search = ann.page.get_by_label("Search messages and people")
    await search.fill("pal")
    people = ann.page.locator("#people .chat-item")
    await expect(people).to_have_count(20)
    await ann.page.get_by_role("button", name="More people").click()
    await expect(people).to_have_count(21)
    await expect(people.last).to_contain_text("@pal21")
    await expect(people.last).to_be_focused()
    await expect(ann.page.get_by_role("button", name="More people")).to_have_count(0)
    await search.fill("needle")
    found = ann.page.locator("#found .chat-item .ellipsis")
    await expect(found).to_have_count(20)
    await ann.page.get_by_role("button", name="More messages").click()
    await expect(found).to_have_count(21)
    assert sorted(await found.all_inner_texts()) == needles
    await ann.shot("more-results")

    # A group of more people than a page of search shows each member.
    await search.press("Escape")
    await ann.page.locator("#chats .chat-item").filter(has_text="Everyone").click()
    await ann.page.get_by_role("button", name="Members").click()
    members = ann.page.get_by_role("dialog", name="Everyone: members")
    await expect(members.locator("#members li")).to_have_count(22)


@pytest.mark.parametrize("oauth", [True])
async def test_password_reset_and_social_login_from_the_login_screen(
    person: People, server: Running, provider: str
) -> None:
    eve = await person("eve")
    async with httpx.AsyncClient(base_url=server.url) as http:
        await helpers.register(http, "eve")
    page = eve.page
    await page.goto("/")

    # Forgot password: a code by mail (the server's log, with no SMTP_URL), then a new password.
    await page.get_by_role("button", name="Forgot password?").click()
    await page.locator("#forgot-form").get_by_label("Email").fill("eve@example.com")
    await page.get_by_role("button", name="Mail me a code").click()
    reset = page.locator("#reset-form")
    await expect(reset.get_by_label("Email")).to_have_value("eve@example.com")
    codes: list[str] = []

    def mailed() -> bool:
        codes[:] = re.findall(r"password reset code is\D*(\d{6})", server.log_path.read_text())
        return bool(codes)

    await helpers.until(mailed, "the reset code in the server's log")
    await reset.get_by_label("Code from the mail").fill(codes[-1])
    await reset.get_by_label("New password").fill("a brand new password")
    await reset.get_by_role("button", name="Set password and log in").click()
    await expect(page.locator("#me-name")).to_have_text("eve")
    await page.get_by_role("button", name="Log out").click()

    # Social login: the provider's button starts at Reverb with this page as the way back; back
    # with a one-time code, the page exchanges it and is logged in.
    button = page.get_by_role("link", name="Continue with Mock ID")
    start = urlsplit(await button.get_attribute("href") or "")
    assert (start.netloc, start.path) == (urlsplit(server.url).netloc, "/api/auth/oauth/mock/start")
    assert parse_qs(start.query)["redirect_uri"] == [f"{server.url}/"]
    site = social.Site(server.url, provider, f"{server.url}/", "")
    try:
        claims = {"email": "sam@example.com", "email_verified": True, "name": "Sam Social"}
        back = site.back_at_app(site.approve("sam", claims))
    finally:
        site.http.close()
    await page.goto(f"/?login_code={back['login_code']}")
    await expect(page.locator("#me-name")).to_have_text("Sam Social")
    assert "login_code" not in page.url


# Interactive elements on show with no accessible name: no label, aria-label(ledby), text or title.
UNNAMED = """() => [...document.querySelectorAll('button, input, textarea, select, a[href]')]
  .filter((e) => e.getClientRects().length > 0)
  .filter((e) => !(e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
    || (e.labels && e.labels.length) || e.textContent.trim() || e.title))
  .map((e) => e.outerHTML.slice(0, 120))"""
# The focused element's accessible name, as far as this page gives names: its label's text, its
# aria-label, or its own text.
FOCUSED = """() => { const e = document.activeElement;
  const label = e.labels && e.labels.length ? e.labels[0].textContent : null;
  return (label || e.getAttribute('aria-label') || e.textContent || '').trim(); }"""


async def tab_to(page: Page, name: str | re.Pattern[str], limit: int = 15) -> list[str]:
    """Press Tab until the focus is on the control named `name`; the names passed on the way."""

    def reached(now: str) -> bool:
        return bool(name.search(now)) if isinstance(name, re.Pattern) else now == name

    seen = [await page.evaluate(FOCUSED)]
    for _ in range(limit):
        if reached(seen[-1]):
            return seen
        await page.keyboard.press("Tab")
        seen.append(await page.evaluate(FOCUSED))
    raise AssertionError(f"Tab never reached {name!r}: {seen}")


async def test_usable_by_keyboard_alone_with_every_control_named(
    person: People, server: Running
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await helpers.register(http, "bob", display_name="Bob")
    kay = await person("kay")
    page = kay.page
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert await page.evaluate(UNNAMED) == []

    # The login form in reading order, then the way to the other forms; showing a form puts the
    # focus on its first field, and each field leads to the next.
    seen = await tab_to(page, "Create an account")
    assert seen[-4:] == ["Email or username", "Password", "Log in", "Create an account"], seen
    await page.keyboard.press("Enter")
    assert await page.evaluate(FOCUSED) == "Username"
    for text, following in [
        ("kay", "Display name"),
        ("Kay", "Email"),
        ("kay@example.com", "Password"),
        (PASSWORD, "Create account"),
    ]:
        await page.keyboard.type(text)
        await page.keyboard.press("Tab")
        assert await page.evaluate(FOCUSED) == following
    await page.keyboard.press("Enter")
    await expect(page.locator("#me-name")).to_have_text("Kay")

    # Find Bob, open the chat and send, by keys alone.
    await tab_to(page, "Search messages and people")
    await page.keyboard.type("bob")
    await expect(
        page.locator("#people").get_by_role("button", name=re.compile("@bob"))
    ).to_be_visible()
    await tab_to(page, re.compile("@bob"))
    await page.keyboard.press("Enter")
    await expect(page.locator("#chat-title")).to_have_text("Bob")
    await tab_to(page, "Message")
    await page.keyboard.type("hello, by keys alone")
    await page.keyboard.press("Enter")
    await expect(bubbles(kay)).to_have_text(["hello, by keys alone"])
    await expect(page.locator("#messages .msg").last).to_have_attribute(
        "data-status", re.compile("sent|delivered|read")
    )
    assert await page.evaluate(UNNAMED) == []
    await kay.shot("keyboard")
