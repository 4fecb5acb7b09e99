"""app.json (Dokku's format) at the root of the pushed tree: deploy scripts, healthchecks, first formation.

    {"scripts": {"dokku": {"predeploy": "...", "postdeploy": "..."}},
     "healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok", "attempts": 5}]},
     "formation": {"web": {"quantity": 2}, "worker": {"quantity": 1}}}

Other keys (Heroku's env, addons, buildpacks...) are left to whoever reads them. A malformed file fails
the deploy before anything is built, with a one-line reason naming the field. As Dokku does, the file may
hold `//` and `/* */` comments and trailing commas (`strip_jsonc` removes them, strings left intact).

A `formation` that gives any `quantity` is authoritative (Dokku's rule): each deploy sets every count from
it (types it does not name: 0) and `ps:scale` is refused until a deploy without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks.checks import parse_healthchecks
from pushdock.errors import UsageError

SCRIPTS = ("predeploy", "postdeploy")
MAX_SCALE = 50
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AppJson:
    scripts: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    formation: dict[str, int] = field(default_factory=dict)
    formation_fixed: bool = False  # some entry gives a quantity: the formation is app.json's, not ps:scale's


def read_app_json(build_dir: Path) -> AppJson:
    """The build dir's app.json, parsed; an empty AppJson when there is none."""
    path = build_dir / "app.json"
    if not path.is_file():
        return AppJson()
    if path.stat().st_size > MAX_BYTES:
        raise UsageError(f"app.json is larger than {MAX_BYTES // 1024} KiB")
    return parse_app_json(path.read_bytes().decode("utf-8", "replace"))


def parse_app_json(text: str) -> AppJson:
    """Parse and validate app.json; UsageError with a one-line reason for anything malformed."""
    try:
        data = json.loads(strip_jsonc(text))
    except ValueError as e:
        raise UsageError(f"app.json is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError("app.json must be a JSON object")
    raw_formation = data.get("formation")
    return AppJson(
        scripts=_scripts(data.get("scripts")),
        checks=parse_healthchecks(data["healthchecks"]) if data.get("healthchecks") is not None else {},
        formation=_formation(raw_formation),
        formation_fixed=isinstance(raw_formation, dict)
        and any(isinstance(spec, dict) and "quantity" in spec for spec in raw_formation.values()),
    )


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


def _scripts(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError("app.json scripts must be an object")
    dokku = raw.get("dokku")
    if dokku is None:
        return {}  # Heroku's own scripts (review-app postdeploy...) are not Dokku's
    if not isinstance(dokku, dict):
        raise UsageError("app.json scripts.dokku must be an object")
    out = {}
    for key, value in dokku.items():
        if key not in SCRIPTS:
            raise UsageError(f"app.json scripts.dokku: unknown script {str(key)[:40]!r} (known: {', '.join(SCRIPTS)})")
        if not isinstance(value, str):
            raise UsageError(f"app.json scripts.dokku.{key} must be a command string")
        if value.strip():
            out[key] = value.strip()
    return out


def _formation(raw: Any) -> dict[str, int]:
    from pushdock.state import PROCESS_NAME

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError("app.json formation must be an object of process type -> {\"quantity\": N}")
    out = {}
    for process, spec in raw.items():
        if not isinstance(process, str) or not PROCESS_NAME.match(process) or process == "release":
            raise UsageError(f"app.json formation: invalid process type {str(process)[:40]!r}")
        quantity = spec.get("quantity", 1) if isinstance(spec, dict) else None
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_SCALE:
            raise UsageError(f"app.json formation.{process}.quantity must be a whole number from 0 to {MAX_SCALE}")
        out[process] = quantity
    return out
