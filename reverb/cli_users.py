"""`reverb users ...`: accounts managed from the command line, through the same services the
API uses (same validation, same revocation of sessions)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from reverb.api.schemas import Password, RegisterIn
from reverb.app import command_services
from reverb.config import Settings
from reverb.domain.users import User
from reverb.errors import ReverbError
from reverb.services.admin import AccountAdmin

T = TypeVar("T")
# The same rule as registration and password changes over the API.
_PASSWORD: TypeAdapter[str] = TypeAdapter(Password)


def _password(args: argparse.Namespace) -> str:
    """From standard input with --password-stdin (scripts), else asked twice at a terminal:
    never from the command line, where it would stay in the shell's history."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("reverb: the passwords differ")
    return first


def _row(user: User) -> str:
    state = "disabled" if user.disabled_at else "active"
    return f"{user.id}\t{user.username}\t{user.email}\t{state}\t{user.created_at:%Y-%m-%d}"


def _run(settings: Settings, work: Callable[[AccountAdmin], Awaitable[T]]) -> T:
    async def go() -> T:
        async with command_services(settings) as services:
            return await work(AccountAdmin(services.db, services.auth))

    try:
        return asyncio.run(go())
    except ReverbError as exc:
        raise SystemExit(f"reverb: {exc.detail}") from None


def _invalid(exc: ValidationError) -> SystemExit:
    what = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return SystemExit(f"reverb: {what}")


def create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        body = RegisterIn(
            username=args.username,
            email=args.email,
            password=_password(args),
            display_name=args.display_name,
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    user = _run(
        settings,
        lambda admin: admin.auth.create_account(
            username=body.username,
            email=body.email,
            password=body.password,
            display_name=body.display_name,
        ),
    )
    print(_row(user))
    return 0


def list_(settings: Settings, args: argparse.Namespace) -> int:
    users = _run(
        settings,
        lambda admin: admin.list_accounts(search=args.search, limit=args.limit),
    )
    for user in users:
        print(_row(user))
    return 0


def disable(settings: Settings, args: argparse.Namespace) -> int:
    print(_row(_run(settings, lambda admin: admin.set_disabled(args.user, disabled=True))))
    return 0


def enable(settings: Settings, args: argparse.Namespace) -> int:
    print(_row(_run(settings, lambda admin: admin.set_disabled(args.user, disabled=False))))
    return 0


def set_password(settings: Settings, args: argparse.Namespace) -> int:
    try:
        new = _PASSWORD.validate_python(_password(args))
    except ValidationError as exc:
        raise _invalid(exc) from None
    print(_row(_run(settings, lambda admin: admin.set_password(args.user, new))))
    return 0
