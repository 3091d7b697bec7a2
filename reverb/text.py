"""What counts as text from a client, for every entry point (REST and WebSocket) alike.

Text is any Unicode code point except NUL, which PostgreSQL text cannot hold, and the UTF-16
surrogates, which no UTF-8 can encode (a lone one reaches Python from a JSON escape such as
"\\ud800"). A line (a name, an emoji) has no control characters at all."""

from __future__ import annotations

import re

# Written for both readers of a pattern: Python's `re` (the server's checks) and ECMA-262 in
# unicode mode (JSON Schema, so OpenAPI clients and tools know the rule).
TEXT_PATTERN = "^[^\\u0000\\ud800-\\udfff]*$"
LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f\\ud800-\\udfff]*$"
_TEXT = re.compile(TEXT_PATTERN)
_LINE = re.compile(LINE_PATTERN)


def is_text(value: str) -> bool:
    return _TEXT.match(value) is not None


def is_line(value: str) -> bool:
    return _LINE.match(value) is not None
