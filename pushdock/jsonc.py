"""JSON with comments and trailing commas, as Dokku reads app.json: `//` and `/* */` comments, `[1, 2,]`.

Needed by more than one package (app.json's scripts and formation in hooks/, its buildpacks in builders/),
so it lives in the core. A small tokenizer, not a regex: strings are kept byte for byte, so a `//` or a
`,]` inside one is text, not syntax.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str) -> Any:
    """`json.loads` of `strip_jsonc(text)`; ValueError (json.JSONDecodeError among them) for bad input."""
    return json.loads(strip_jsonc(text))


def strip_jsonc(text: str) -> str:
    """JSON with `//` and `/* */` comments and trailing commas -> plain JSON; strings are kept byte for byte.

    Comments become spaces (newlines kept, so a JSON error still names the right line); a comma whose next
    significant character closes an object or array is dropped. ValueError for an unterminated comment.
    """
    out: list[str] = []
    comma: int | None = None  # index in `out` of the last comma not yet followed by a significant character
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            comma, i = None, end
            continue
        if c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"unterminated /* comment at line {text.count(chr(10), 0, i) + 1}")
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end + 2]))
            i = end + 2
            continue
        if c in "}]" and comma is not None:
            out[comma] = " "
        if c == ",":
            comma = len(out)
        elif not c.isspace():
            comma = None
        out.append(c)
        i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """The index just past the JSON string opening at `start` (or the end of the text if unterminated)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)
