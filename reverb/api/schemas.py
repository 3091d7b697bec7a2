"""Wire shapes of the REST API: separate models for what comes in and what goes out.

What comes in is pydantic (its validation constraints give the 422s); what goes out is msgspec
structs, like the views they carry (`reverb.domain.wire`), answered with `api.structs.Answer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from reverb import text
from reverb.domain.events import LOGGED_EVENTS
from reverb.domain.users import IssuedTokens
from reverb.domain.wire import SCHEMA_REF, MessageView, MeView
from reverb.ids import ID_LENGTH, ID_PATTERN

T = TypeVar("T")

USERNAME_PATTERN = re.compile(r"[a-z0-9_.]{3,32}")


@dataclass(frozen=True, slots=True)
class _Rule:
    """`Annotated` metadata: a rule of reverb.text, checked after the constraints before it (so
    on the stripped value where whitespace is stripped), its pattern stated in the schema."""

    pattern: str
    holds: Callable[[str], bool]
    message: str

    def _check(self, value: str) -> str:
        if not self.holds(value):
            raise ValueError(self.message)
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["pattern"] = self.pattern
        return out


TEXT = _Rule(
    text.TEXT_PATTERN, text.is_text, "must not contain NUL characters or unpaired UTF-16 surrogates"
)
LINE = _Rule(text.LINE_PATTERN, text.is_line, "must not contain control characters")

# Every string a client sends is Text, a Line or an Id, in bodies, query and path parameters.
Text = Annotated[str, TEXT]
Line = Annotated[str, LINE]
Id = Annotated[
    str, StringConstraints(min_length=ID_LENGTH, max_length=ID_LENGTH, pattern=ID_PATTERN)
]


def _username(value: str) -> str:
    value = value.strip().lower()
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValueError("username must be 3-32 characters of a-z, 0-9, '_' and '.'")
    return value


# The pattern states the rule as the schema sees the raw value: surrounding whitespace and capitals
# are allowed (and taken off).
Username = Annotated[
    str,
    Field(max_length=64, pattern=r"^\s*[A-Za-z0-9_.]{3,32}\s*$"),
    AfterValidator(_username),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024), TEXT]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=1024), TEXT]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), LINE
]
Bio = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), TEXT]


class Input(BaseModel):
    # Unknown fields are refused, so a typo in a field name is an error, not a silent no-op.
    # Strict: JSON `false` is not the number 0, nor "5" the number 5.
    model_config = ConfigDict(extra="forbid", strict=True)


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable `code`."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, object]] | None = None


class Page(Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None


# --- users -------------------------------------------------------------------------------------


class ProfilePatch(Input):
    display_name: DisplayName | None = None
    bio: Bio | None = None


LoginCode = Annotated[str, StringConstraints(min_length=1, max_length=128), TEXT]


class DeleteMe(Input):
    """Confirmed with the password, or, for an account without one, with the `login_code` of
    a fresh provider login (instead of trading it for a session)."""

    password: Secret | None = None
    login_code: LoginCode | None = None

    @model_validator(mode="after")
    def _one_proof(self) -> DeleteMe:
        if (self.password is None) == (self.login_code is None):
            raise ValueError("give exactly one of password or login_code")
        return self


class PasswordChange(Input):
    current_password: Secret
    new_password: Password


# --- auth --------------------------------------------------------------------------------------


class RegisterIn(Input):
    username: Username
    email: Email
    password: Password
    display_name: DisplayName | None = None


class LoginIn(Input):
    email: Annotated[str, StringConstraints(min_length=1, max_length=320), TEXT] | None = None
    username: Annotated[str, StringConstraints(min_length=1, max_length=64), TEXT] | None = None
    password: Secret

    @model_validator(mode="after")
    def _one_login(self) -> LoginIn:
        if (self.email is None) == (self.username is None):
            raise ValueError("give exactly one of email or username")
        return self

    @property
    def login(self) -> str:
        return self.email if self.email is not None else (self.username or "")


class TokenForm(BaseModel):
    """The OAuth2 password form (RFC 6749, 4.3) that the Authorize button of /api/docs sends;
    `username` may be an email. Other OAuth2 fields are ignored."""

    grant_type: Annotated[str, StringConstraints(pattern="^password$")] = "password"
    username: Annotated[str, StringConstraints(min_length=1, max_length=320), TEXT]
    password: Secret


Code = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
Email = Annotated[EmailStr, Field(max_length=320), TEXT, AfterValidator(str.lower)]


class ForgotIn(Input):
    email: Email


class ResetIn(Input):
    email: Email
    code: Code
    new_password: Password


class CodeIn(Input):
    code: Code


class Accepted(Struct, kw_only=True):
    """The same answer whatever happened behind it."""

    status: Literal["accepted"] = "accepted"


class LoginCodeIn(Input):
    login_code: LoginCode


class ProviderOut(Struct, kw_only=True):
    name: str
    display_name: str


class RefreshIn(Input):
    refresh_token: Secret


class SessionOut(Struct, kw_only=True):
    user: MeView
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int

    @classmethod
    def of(cls, issued: IssuedTokens) -> SessionOut:
        return cls(
            user=MeView.of(issued.user),
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
        )


class TokenOut(Struct, kw_only=True):
    access_token: str
    token_type: Literal["bearer"] = "bearer"


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


# --- chats and messages ------------------------------------------------------------------------

# Sequence numbers are stored as 32-bit integers; larger values can only be mistakes.


def _whole(value: object) -> object:
    # JSON Schema counts 1.0 as an integer, so this does too; 1.5, true and "1" stay refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Seq = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(_whole)]
ChatName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), LINE
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000), TEXT]


class DirectChatIn(Input):
    type: Literal["direct"]
    user_id: Id


class GroupChatIn(Input):
    type: Literal["group"]
    name: ChatName
    description: Description = ""
    member_ids: Annotated[list[Id], Field(max_length=1000)] = Field(default_factory=list)


ChatIn = Annotated[DirectChatIn | GroupChatIn, Field(discriminator="type")]


class ChatPatch(Input):
    name: ChatName | None = None
    description: Description | None = None


class MemberIn(Input):
    user_id: Id


class RoleIn(Input):
    role: Literal["admin", "member"]


class SeqIn(Input):
    seq: Seq


class MessageIn(Input):
    chat_id: Id
    # Length and blankness are checked by the service (422 content_too_long), which the
    # WebSocket path shares.
    content: Text
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128), TEXT] | None = None
    reply_to_id: Id | None = None
    # Checked by the service (at most 10, each the sender's own unattached upload).
    attachment_ids: Annotated[list[Id], Field(max_length=100)] = Field(default_factory=list)


class MessageEdit(Input):
    content: Text


class MessagePage(Struct, kw_only=True):
    items: list[MessageView]
    has_more: bool


# A logged event as stored: the JSON it was delivered as, spliced in without a decode.
StoredEvent = Annotated[
    msgspec.Raw,
    Meta(
        extra_json_schema={
            "anyOf": [{"$ref": SCHEMA_REF.format(name=e.__name__)} for e in LOGGED_EVENTS]
        }
    ),
]


class EventPage(Struct, kw_only=True):
    """`items` are the logged events exactly as the WebSocket delivers them."""

    items: list[StoredEvent]
    has_more: bool
