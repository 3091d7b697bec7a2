"""Logging in through a provider: OpenID Connect (by discovery) and GitHub's OAuth 2.

The flow: `start` sends the browser to the provider (authorization code with PKCE, `state` and,
for OpenID Connect, `nonce`); the provider sends it back to `callback`, which checks all of
them, finds or makes the account, and sends the browser on to the app's `redirect_uri` with a
one-time `login_code` (tokens never travel in a URL); the app trades that code for a session
with `exchange`, within 60 s.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from reverb.config import OAuthProvider, Settings
from reverb.domain.users import IssuedTokens, User
from reverb.errors import ErrorCode, ReverbError, not_found
from reverb.services.auth import AuthService
from reverb.storage import social as social_store
from reverb.storage import users as user_store
from reverb.storage.types import utcnow

log = logging.getLogger(__name__)

# How long a person may spend at the provider before the login must start again.
PENDING_FOR = timedelta(minutes=10)
# The contract: a login code is traded within 60 s, once.
LOGIN_CODE_FOR = timedelta(seconds=60)
# One request to a provider; a provider that takes longer is reported to the app as down.
PROVIDER_TIMEOUT_S = 10.0
# Discovery documents and keys change rarely; keys are fetched again at once for a token
# signed with a key not seen before (a rotation).
DISCOVERY_FOR_S = 3600.0
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class Refused(Exception):
    """The login cannot go on; `code` is what the app is told (`?error=CODE`)."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    username_hint: str


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorize: str
    token: str
    jwks: str | None  # OpenID Connect: the ID token's keys
    api: str | None = None  # GitHub: its user API


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _verified(value: object) -> bool:
    # Some providers send the claim as the string "true".
    return value is True or value == "true"


@dataclass(slots=True)
class SocialLogin:
    settings: Settings
    auth: AuthService
    _documents: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def providers(self) -> list[OAuthProvider]:
        return list(self.settings.oauth_providers)

    def _provider(self, name: str) -> OAuthProvider:
        for provider in self.settings.oauth_providers:
            if provider.name == name:
                return provider
        raise not_found(ErrorCode.NOT_FOUND, "login provider")

    def _callback_url(self, provider: OAuthProvider) -> str:
        return f"{self.settings.base_url}/api/auth/oauth/{provider.name}/callback"

    def _client(self, provider: OAuthProvider, **kwargs: Any) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret.get_secret_value(),
            redirect_uri=self._callback_url(provider),
            code_challenge_method="S256",
            timeout=PROVIDER_TIMEOUT_S,
            **kwargs,
        )

    # --- start -------------------------------------------------------------------------------

    async def start(self, *, name: str, redirect_uri: str) -> str:
        """Where to send the browser: the provider's login page, or straight back to the app
        with `?error=` when the provider cannot be reached."""
        provider = self._provider(name)
        if redirect_uri not in self.settings.oauth_redirect_uris:
            raise ReverbError(
                ErrorCode.VALIDATION_ERROR,
                "redirect_uri must be one of OAUTH_REDIRECT_URIS, exactly",
                422,
                errors=[{"field": "redirect_uri", "message": "not an allowed redirect URI"}],
            )
        try:
            endpoints = await self._endpoints(provider)
        except Refused as exc:
            log.warning("login with %s: %s", provider.name, exc)
            return _with_query(redirect_uri, error=exc.code)
        state, verifier, nonce = (secrets.token_urlsafe(n) for n in (32, 64, 24))
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            await social_store.prune_pending(tx.conn, now)
            await social_store.add_pending(
                tx.conn,
                state,
                social_store.PendingLogin(
                    provider.name, verifier, nonce, redirect_uri, now + PENDING_FOR
                ),
            )
        extra = {"nonce": nonce} if endpoints.jwks else {}
        scope = "openid email profile" if endpoints.jwks else "read:user user:email"
        async with self._client(provider, scope=scope) as client:
            url, _ = client.create_authorization_url(
                endpoints.authorize, state=state, code_verifier=verifier, **extra
            )
        return str(url)

    # --- callback ----------------------------------------------------------------------------

    async def callback(
        self, *, name: str, state: str | None, code: str | None, error: str | None
    ) -> str:
        """Where to send the browser back to: the app's redirect URI with `login_code`, or with
        `error`. A state that is unknown, used, expired or another provider's is refused."""
        provider = self._provider(name)
        now = utcnow()
        pending = None
        if state:
            async with self.auth.db.transaction() as tx:
                pending = await social_store.take_pending(tx.conn, state)
        if pending is None or pending.provider != provider.name or pending.expires_at <= now:
            raise ReverbError(
                ErrorCode.INVALID_STATE, "this login is unknown, used or expired; start again", 400
            )
        if error or not code:
            return _with_query(pending.redirect_uri, error="access_denied")
        try:
            identity = await self._identity(provider, code, pending)
            user = await self._account(provider, identity)
        except Refused as exc:
            log.warning("login with %s refused: %s: %s", provider.name, exc.code, exc)
            return _with_query(pending.redirect_uri, error=exc.code)
        login_code = secrets.token_urlsafe(32)
        async with self.auth.db.transaction() as tx:
            await social_store.add_login_code(
                tx.conn, _hash(login_code), user.id, now + LOGIN_CODE_FOR
            )
        return _with_query(pending.redirect_uri, login_code=login_code)

    async def exchange(self, *, login_code: str) -> IssuedTokens:
        now = utcnow()
        async with self.auth.db.transaction() as tx:
            user_id = await social_store.take_login_code(tx.conn, _hash(login_code), now)
            user = await user_store.get(tx.conn, user_id) if user_id else None
            if user is not None and user.disabled_at is None:
                return await self.auth.issue(tx, user, family_id=None, now=now)
        raise ReverbError(ErrorCode.INVALID_CODE, "the login code is wrong, used or expired", 400)

    async def confirm(self, *, user: User, login_code: str) -> None:
        """The caller proves a fresh login through a provider, for an act that needs one
        (deleting an account without a password): the code is used up either way."""
        async with self.auth.db.transaction() as tx:
            owner = await social_store.take_login_code(tx.conn, _hash(login_code), utcnow())
        if owner != user.id:
            raise ReverbError(
                ErrorCode.INVALID_CREDENTIALS, "log in again through your provider first", 403
            )

    # --- the provider's side -----------------------------------------------------------------

    async def _endpoints(self, provider: OAuthProvider) -> Endpoints:
        github = provider.github
        if github is not None:
            return Endpoints(github.authorize, github.token, None, github.api)
        issuer = provider.openid_issuer
        assert issuer is not None  # settings refuse a provider that is neither
        doc = await self._document(f"{issuer}/.well-known/openid-configuration")
        if doc.get("issuer", "").rstrip("/") != issuer:
            raise Refused("provider_error", "the discovery document names another issuer")
        try:
            return Endpoints(
                str(doc["authorization_endpoint"]), str(doc["token_endpoint"]), str(doc["jwks_uri"])
            )
        except KeyError as exc:
            raise Refused("provider_error", f"the discovery document lacks {exc}") from None

    async def _document(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        cached = self._documents.get(url)
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        try:
            async with httpx2.AsyncClient(timeout=PROVIDER_TIMEOUT_S) as http:
                answer = await http.get(url)
                answer.raise_for_status()
                doc = answer.json()
        except Exception as exc:  # the network, the status or the JSON: a provider that is down
            raise Refused("provider_unavailable", f"{url}: {type(exc).__name__}") from None
        if not isinstance(doc, dict):
            raise Refused("provider_error", f"{url}: not a JSON object")
        self._documents[url] = (time.monotonic() + DISCOVERY_FOR_S, doc)
        return doc

    async def _identity(
        self, provider: OAuthProvider, code: str, pending: social_store.PendingLogin
    ) -> Identity:
        endpoints = await self._endpoints(provider)
        headers = {"Accept": "application/json"}
        try:
            async with self._client(provider) as client:
                token = await client.fetch_token(
                    endpoints.token, code=code, code_verifier=pending.code_verifier, headers=headers
                )
                if endpoints.api is not None:
                    return await _github_identity(client, endpoints.api)
        except httpx2.HTTPError as exc:  # down, slow, or answering with an error status
            raise Refused("provider_unavailable", f"{type(exc).__name__}") from None
        # Authlib's errors: the provider refused the code, or its answer is not a token.
        # ValueError: an answer that is not JSON.
        except (AuthlibBaseError, ValueError) as exc:
            raise Refused("provider_error", f"token or user: {type(exc).__name__}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise Refused("provider_error", "no ID token in the token response")
        claims = await self._id_token_claims(provider, endpoints, id_token, pending.nonce)
        email = claims.get("email")
        name = claims.get("name") or claims.get("preferred_username")
        return Identity(
            subject=str(claims["sub"]),
            email=email.lower() if isinstance(email, str) else None,
            email_verified=_verified(claims.get("email_verified")),
            name=str(name) if name else None,
            username_hint=str(claims.get("preferred_username") or email or "user"),
        )

    async def _id_token_claims(
        self, provider: OAuthProvider, endpoints: Endpoints, id_token: str, nonce: str
    ) -> dict[str, Any]:
        assert endpoints.jwks is not None and provider.openid_issuer is not None
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": provider.openid_issuer},
            aud={"essential": True, "value": provider.client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
            exp={"essential": True},
        )
        for fresh in (False, True):
            keys = KeySet.import_key_set(await self._document(endpoints.jwks, fresh=fresh))  # type: ignore[arg-type]
            try:
                token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            except (JoseError, ValueError) as exc:
                if fresh:
                    raise Refused("invalid_id_token", f"signature: {type(exc).__name__}") from None
                continue  # perhaps a key the provider rotated in: fetch the keys again
            try:
                registry.validate(token.claims)
            except JoseError as exc:
                raise Refused("invalid_id_token", f"claims: {exc.error}") from None
            return dict(token.claims)
        raise AssertionError("unreachable")

    # --- the account ---------------------------------------------------------------------------

    async def _account(self, provider: OAuthProvider, identity: Identity) -> User:
        """The account the identity belongs to; else the account with the same e-mail where
        both sides verified it; else a new account."""
        async with self.auth.db.read() as conn:
            owner = await social_store.identity_owner(conn, provider.name, identity.subject)
            user = await user_store.get(conn, owner) if owner else None
            same = await user_store.find_by_email(conn, identity.email) if identity.email else None
        if user is not None:
            if user.disabled_at is not None:
                raise Refused("account_disabled", "the account is disabled")
            return user
        if same is not None:
            if not (identity.email_verified and same.email_verified_at and not same.disabled_at):
                raise Refused(
                    "email_in_use", "an account has this e-mail; both sides must have verified it"
                )
            async with self.auth.db.transaction() as tx:
                await social_store.add_identity(
                    tx.conn, provider.name, identity.subject, same.id, utcnow()
                )
            return same
        if not identity.email:
            raise Refused("email_missing", "the provider gave no e-mail address")

        async def link(tx: Any, created: User) -> User:
            await social_store.add_identity(
                tx.conn, provider.name, identity.subject, created.id, created.created_at
            )
            return created

        username = await self._free_username(identity.username_hint)
        return await self.auth.create(
            username,
            identity.email,
            None,
            (identity.name or username)[:64],
            then=link,
            email_verified_at=utcnow() if identity.email_verified else None,
        )

    async def _free_username(self, hint: str) -> str:
        base = re.sub(r"[^a-z0-9_.]", "", hint.split("@")[0].lower())[:24] or "user"
        base = base if len(base) >= 3 else f"{base}_user"
        async with self.auth.db.read() as conn:
            for candidate in [base, *(f"{base}{secrets.randbelow(10**6)}" for _ in range(5))]:
                taken, _ = await user_store.taken(conn, username=candidate, email="")
                if not taken:
                    return candidate
        return f"user{secrets.token_hex(8)}"


async def _github_identity(client: AsyncOAuth2Client, api: str) -> Identity:
    """GitHub's user API: the account, and its e-mail: the primary one if verified, else
    another verified one, else the primary one (unverified: like an OpenID provider's
    unverified claim, it makes a new account but joins none)."""
    me = (await client.get(f"{api}/user")).raise_for_status().json()
    emails = (await client.get(f"{api}/user/emails")).raise_for_status().json()
    if not isinstance(me, dict) or not isinstance(me.get("id"), int | str):
        raise Refused("provider_error", "the user API answered no account")
    if not isinstance(emails, list):
        raise Refused("provider_error", "the user API answered no list of e-mails")
    known = [e for e in emails if isinstance(e, dict) and isinstance(e.get("email"), str)]
    usable = [e for e in known if e.get("verified") is True or e.get("primary") is True]
    chosen = max(
        usable, key=lambda e: (e.get("verified") is True, e.get("primary") is True), default=None
    )
    name, login = me.get("name"), me.get("login")
    return Identity(
        subject=str(me["id"]),
        email=str(chosen["email"]).lower() if chosen else None,
        email_verified=chosen is not None and chosen.get("verified") is True,
        name=name if isinstance(name, str) and name else None,
        username_hint=login if isinstance(login, str) and login else "user",
    )


def _with_query(uri: str, **params: str) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"
