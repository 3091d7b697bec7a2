"""Domain errors with stable codes.

Services raise `ReverbError`; the HTTP edge (`reverb.api.problems`) maps it once to an RFC 9457
problem response, and the WebSocket gateway to an `error` frame or a close code.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus


class ErrorCode(StrEnum):
    """Stable, snake_case codes that clients branch on. Never rename one: add a new one."""

    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_AUTHENTICATED = "not_authenticated"
    INVALID_TOKEN = "invalid_token"
    INVALID_CREDENTIALS = "invalid_credentials"
    ACCOUNT_DISABLED = "account_disabled"
    INVALID_CODE = "invalid_code"
    INVALID_STATE = "invalid_state"
    EMAIL_UNVERIFIED = "email_unverified"
    RATE_LIMITED = "rate_limited"
    USERNAME_TAKEN = "username_taken"
    EMAIL_TAKEN = "email_taken"
    USER_NOT_FOUND = "user_not_found"
    CHAT_NOT_FOUND = "chat_not_found"
    MESSAGE_NOT_FOUND = "message_not_found"
    MEMBER_NOT_FOUND = "member_not_found"
    ALREADY_MEMBER = "already_member"
    NOT_A_GROUP = "not_a_group"
    MESSAGE_DELETED = "message_deleted"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    CONTENT_TOO_LONG = "content_too_long"
    TOO_MANY_REACTIONS = "too_many_reactions"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


class ReverbError(Exception):
    """An error a client caused or may act on; carries everything the edge needs to answer."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.headers = headers or {}
        self.errors = errors

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase


def not_found(code: ErrorCode, what: str) -> ReverbError:
    return ReverbError(code, f"{what} not found", 404)


def forbidden(detail: str) -> ReverbError:
    return ReverbError(ErrorCode.FORBIDDEN, detail, 403)


def conflict(code: ErrorCode, detail: str) -> ReverbError:
    return ReverbError(code, detail, 409)


def invalid(
    detail: str, *, field: str | None = None, code: ErrorCode = ErrorCode.VALIDATION_ERROR
) -> ReverbError:
    """A 422 raised by a service for input that passed schema validation but breaks a rule."""
    errors: list[dict[str, object]] | None = None
    if field is not None:
        errors = [{"loc": ["body", field], "msg": detail, "type": code.value}]
    return ReverbError(code, detail, 422, errors=errors)
