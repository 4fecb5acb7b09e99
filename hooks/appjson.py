"""app.json (Dokku's format) at the root of the pushed tree: deploy scripts, healthchecks, formation.

    {"scripts": {"dokku": {"predeploy": "...", "postdeploy": "..."}},
     "healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok", "attempts": 5}]},
     "formation": {"web": {"quantity": 2}, "worker": {"quantity": 1}}}

Other keys (Heroku's env, addons, buildpacks...) are left to whoever reads them. A malformed file fails
the deploy before anything is built, with a one-line reason naming the field. As Dokku does, the file may
hold `//` and `/* */` comments and trailing commas (pushdock/jsonc.py).

A `formation` that gives any `quantity` is authoritative (Dokku's rule): each deploy sets every count from
it (types it does not name: 0) and `ps:scale` is refused until a deploy without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks.checks import parse_healthchecks
from pushdock import jsonc, pushed
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
    text = pushed.read_text(build_dir, "app.json", limit=MAX_BYTES)
    return AppJson() if text is None else parse_app_json(text)


def parse_app_json(text: str) -> AppJson:
    """Parse and validate app.json; UsageError with a one-line reason for anything malformed."""
    try:
        data = jsonc.loads(text)
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
