"""Answering with the wire structs (`reverb.domain.wire`) and documenting them.

A route answers with `Answer(value)`: the value is encoded by the one wire encoder (or is JSON
already, such as a message encoded once at its send), not by FastAPI's pydantic serialisation.
`returns(Model)` is its OpenAPI entry: a `$ref` to the component generated from the struct
itself (`msgspec.json.schema_components`), which `install` adds to the app's document, so each
shape has a single definition for both the wire and the docs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from reverb.domain.wire import SCHEMA_REF, encode

# Every struct a route names, so that their components go into the document.
_documented: dict[Any, None] = {}


class Answer(JSONResponse):
    """JSON from a wire struct, or bytes that are JSON already (spliced in as they are)."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else encode(content)


def _ref(model: Any) -> dict[str, Any]:
    (schema,), _ = msgspec.json.schema_components([model], ref_template=SCHEMA_REF)
    return schema


def returns(
    model: Any, status: int = 200, description: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of an answer of `model` (a struct, or a generic struct's alias)."""
    _documented[model] = None
    return {
        status: {
            "description": description or HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": _ref(model)}},
        }
    }


def install(app: FastAPI, extra: Iterable[Any] = ()) -> None:
    """Add the structs' components to the app's OpenAPI document (built once, as FastAPI's).
    `extra`: structs referenced by another component's schema by hand (see `domain.events`)."""
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        _, components = msgspec.json.schema_components(
            [*_documented, *extra], ref_template=SCHEMA_REF
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        clash = schemas.keys() & components.keys()
        assert not clash, f"two definitions of {sorted(clash)}"
        schemas.update(components)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
