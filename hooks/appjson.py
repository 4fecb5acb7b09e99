"""app.json (Dokku's format) at the root of the pushed tree: deploy scripts, healthchecks, formation.

    {"scripts": {"dokku": {"predeploy": "...", "postdeploy": "..."}},
     "healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok", "attempts": 5}]},
     "formation": {"web": {"quantity": 2}, "worker": {"quantity": 1}},
     "cron": [{"command": "python task.py", "schedule": "*/5 * * * *"}]}

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

from pushdock import jsonc, pushed
from pushdock.checks import parse_healthchecks
from pushdock.errors import UsageError

SCRIPTS = ("predeploy", "postdeploy")
MAX_SCALE = 50
MAX_BYTES = 1024 * 1024
MAX_CRON = 50
MAX_CRON_COMMAND = 1000
CRON_KEYS = ("command", "schedule", "maintenance", "concurrency_policy")


@dataclass(frozen=True)
class AppJson:
    scripts: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    formation: dict[str, int] = field(default_factory=dict)
    formation_fixed: bool = False  # some entry gives a quantity: the formation is app.json's, not ps:scale's
    cron: list[dict[str, Any]] = field(default_factory=list)


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
        cron=_cron(data.get("cron")),
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
    from pushdock.state import PROCESS_NAME  # noqa: PLC0415 -- start-up: loads only when this path runs

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


def _cron(raw: Any) -> list[dict[str, Any]]:
    """Dokku's cron entries, each schedule checked now: a bad one rejects the push, naming the entry."""
    from pushdock.timer import cron_expression  # noqa: PLC0415 -- start-up: loads only when this path runs

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UsageError('app.json cron must be a list of {"command": ..., "schedule": ...}')
    if len(raw) > MAX_CRON:
        raise UsageError(f"app.json cron has {len(raw)} entries (at most {MAX_CRON})")
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(raw):
        where = f"app.json cron[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f'{where} must be an object {{"command": ..., "schedule": ...}}')
        unknown = sorted(str(k)[:40] for k in entry if k not in CRON_KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(CRON_KEYS)})")
        command, schedule = entry.get("command"), entry.get("schedule")
        if not isinstance(command, str) or not command.strip():
            raise UsageError(f"{where}.command must be a non-empty command string")
        if len(command) > MAX_CRON_COMMAND or "\n" in command:
            raise UsageError(f"{where}.command must be one line of at most {MAX_CRON_COMMAND} characters")
        if not isinstance(schedule, str):
            raise UsageError(f'{where}.schedule must be a string such as "*/5 * * * *" or "@daily"')
        try:
            cron_expression(schedule)
        except UsageError as e:
            raise UsageError(f"{where}: {e}") from None
        maintenance = entry.get("maintenance", False)
        if not isinstance(maintenance, bool):
            raise UsageError(f"{where}.maintenance must be true or false")
        policy = entry.get("concurrency_policy", "forbid")
        if policy != "forbid":
            raise UsageError(f"{where}.concurrency_policy: only \"forbid\" is supported (a job never overlaps itself)")
        job = {"command": command.strip(), "schedule": " ".join(schedule.split())}
        if job in [{"command": j["command"], "schedule": j["schedule"]} for j in out]:
            raise UsageError(f"{where} repeats an earlier entry (same command and schedule)")
        out.append({**job, "maintenance": True} if maintenance else job)
    return out
