"""Checks: what a scheduler verifies before new instances take traffic, and how it swaps.

Two sources: the app's check settings (properties `checks/APP/...`, set by `checks:*` commands) and
app.json `healthchecks` (Dokku's format), normalized here and kept on each release.

Settings (property -> meaning):
  disabled        "1": stop the old instances before starting the new ones (downtime, for apps that
                  cannot run twice at once); checks still run unless skipped too.
  skipped         "1": route to new instances as soon as they run, without readiness or app.json checks.
  wait-to-retire  seconds the old instances keep running after the proxy switched and drained, before
                  SIGTERM (default 0: pushdock's proxies return from the switch only once the old
                  routes drained, so no request is in flight to them any more).
  stop-timeout    seconds between SIGTERM and SIGKILL for the app's containers (default: PUSHDOCK_STOP_TIMEOUT).
  type            `http` (default): a web instance is ready once it answers HTTP on $PORT; `uptime`: Dokku's
                  default check, every instance must still run (never restarted) `wait` seconds after start.
  wait            seconds of the uptime check (default 10, as Dokku's).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pushdock.errors import UsageError

if TYPE_CHECKING:
    from pushdock.context import Context

STARTUP = "startup"
CHECK_TYPES = ("startup", "liveness", "readiness")  # docker-local runs startup checks (as Dokku does)
# Keys of Dokku's format that pushdock accepts; anything else is a typo worth an error.
KNOWN_KEYS = frozenset({"type", "name", "description", "path", "content", "command", "uptime", "attempts",
                        "timeout", "wait", "initialDelay", "port", "scheme", "warn", "listening", "onFailure"})
PATH = re.compile(r"^/[\x21-\x7e]{0,2047}\Z")  # printable ASCII, no spaces: it goes into an HTTP request line
MAX_WAIT_TO_RETIRE = 3600
MAX_STOP_TIMEOUT = 600
CHECK_KINDS = ("http", "uptime")  # the default readiness check of new instances (`checks:set APP type`)
DEFAULT_UPTIME_WAIT = 10  # seconds: Dokku's DOKKU_DEFAULT_CHECKS_WAIT
MAX_UPTIME_WAIT = 600


@dataclass(frozen=True)
class Healthcheck:
    """One app.json check of a process type: an HTTP path, a command in the container, or an uptime."""

    process: str
    name: str
    type: str = STARTUP
    path: str | None = None
    content: str | None = None
    command: tuple[str, ...] | None = None
    uptime: float | None = None
    port: int | None = None
    attempts: int = 5
    timeout: float = 5.0
    wait: float = 2.0  # seconds between attempts
    initial_delay: float = 0.0  # seconds after the instance is ready before the first attempt
    warn: bool = False  # a failure is reported, not fatal

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = list(self.command) if self.command is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Healthcheck:
        command = data.get("command")
        return cls(**{**data, "command": tuple(command) if command is not None else None})

    def describe(self) -> str:
        if self.path is not None:
            what = f"GET {self.path}" + (f" contains {self.content!r}" if self.content else "")
        elif self.command is not None:
            what = "command " + " ".join(self.command)
        else:
            what = f"up {self.uptime:g}s"
        return f"{self.name}: {what} ({self.attempts} attempts, {self.timeout:g}s timeout, {self.wait:g}s apart)"


def parse_healthchecks(raw: Any, where: str = "app.json healthchecks") -> dict[str, list[dict[str, Any]]]:
    """`{"web": [{...}, ...]}` -> normalized dicts per process type; UsageError naming the first bad field."""
    from pushdock.state import PROCESS_NAME  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be an object of process type -> list of checks")
    out: dict[str, list[dict[str, Any]]] = {}
    for process, checks in raw.items():
        if not isinstance(process, str) or not PROCESS_NAME.match(process):
            raise UsageError(f"{where}: invalid process type {str(process)[:40]!r}")
        if not isinstance(checks, list):
            raise UsageError(f"{where}.{process} must be a list of checks")
        out[process] = [parse_check(process, c, f"{where}.{process}[{i}]").to_dict() for i, c in enumerate(checks)]
    return out


def parse_check(process: str, raw: Any, where: str) -> Healthcheck:
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be an object")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})")
    kind = _choice(raw, "type", CHECK_TYPES, where, STARTUP)
    path = _opt_str(raw, "path", where)
    if path is not None and not PATH.match(path):
        raise UsageError(f"{where}.path must start with '/' and have no spaces (got {path[:60]!r})")
    command = raw.get("command")
    if command is not None:
        if isinstance(command, str) and command.strip():
            command = ["/bin/sh", "-c", command]
        if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            raise UsageError(f"{where}.command must be a string or a non-empty list of strings")
    uptime = _number(raw, "uptime", where, (1, 600))
    given = [k for k in ("path", "command", "uptime") if raw.get(k) is not None]
    if len(given) != 1:
        raise UsageError(f"{where} needs exactly one of path, command or uptime"
                         + (f" (got {', '.join(given)})" if given else ""))
    if path is not None and process != "web":
        raise UsageError(f"{where}: path checks need the web process (other processes get no port)")
    if raw.get("scheme", "http") != "http":
        raise UsageError(f"{where}.scheme: only http is supported (the check talks to the container directly)")
    port = raw.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise UsageError(f"{where}.port must be a TCP port number")
    return Healthcheck(
        process=process,
        name=_opt_str(raw, "name", where) or (path or ("command" if command else "uptime")),
        type=kind, path=path, content=_opt_str(raw, "content", where),
        command=tuple(command) if command is not None else None, uptime=uptime, port=port,
        attempts=int(_number(raw, "attempts", where, (1, 100), 5, integer=True) or 5),
        timeout=float(_number(raw, "timeout", where, (1, 300), 5) or 5),
        wait=float(_number(raw, "wait", where, (0, 300), 2) or 0),
        initial_delay=float(_number(raw, "initialDelay", where, (0, 600), 0) or 0),
        warn=bool(raw.get("warn", False)),
    )


def healthchecks_of(checks: dict[str, list[dict[str, Any]]], process: str, *, kind: str = STARTUP) -> list[Healthcheck]:
    """The checks of `process` of one type (the ones a deploy runs: startup)."""
    return [h for h in map(Healthcheck.from_dict, checks.get(process, [])) if h.type == kind]


def _choice(raw: dict[str, Any], key: str, choices: tuple[str, ...], where: str, default: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise UsageError(f"{where}.{key} must be one of {', '.join(choices)} (got {str(value)[:30]!r})")
    return str(value)


def _opt_str(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}.{key} must be a string")
    return value


def _number(raw: dict[str, Any], key: str, where: str, bounds: tuple[float, float], default: float | None = None,
            *, integer: bool = False) -> float | None:
    low, high = bounds
    value = raw.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise UsageError(f"{where}.{key} must be {kind} from {low:g} to {high:g} (got {str(value)[:30]!r})")
    return float(value)


# -- the app's check settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckSettings:
    disabled: bool = False
    skipped: bool = False
    wait_to_retire: float = 0.0
    stop_timeout: int = 10
    type: str = "http"
    wait: int = DEFAULT_UPTIME_WAIT

    @property
    def uptime(self) -> float | None:
        """Seconds of the uptime check, or None for the HTTP check."""
        return float(self.wait) if self.type == "uptime" else None


def check_settings(ctx: Context, app: str) -> CheckSettings:
    """The app's check settings, defaults filled in (a malformed stored number falls back to its default)."""
    get = ctx.state.get
    return CheckSettings(
        disabled=get("checks", app, "disabled") == "1",
        skipped=get("checks", app, "skipped") == "1",
        wait_to_retire=_stored_number(get("checks", app, "wait-to-retire"), 0.0),
        stop_timeout=int(_stored_number(get("checks", app, "stop-timeout"), ctx.settings.stop_timeout)),
        type="uptime" if get("checks", app, "type") == "uptime" else "http",
        wait=int(_stored_number(get("checks", app, "wait"), DEFAULT_UPTIME_WAIT)) or DEFAULT_UPTIME_WAIT,
    )


def parse_setting(key: str, value: str) -> str:
    """Validate a `checks:set` value; returns it normalized. UsageError for anything else."""
    limits = {"wait-to-retire": (0, MAX_WAIT_TO_RETIRE), "stop-timeout": (0, MAX_STOP_TIMEOUT),
              "wait": (1, MAX_UPTIME_WAIT)}
    if key == "type":
        if value not in CHECK_KINDS:
            raise UsageError(f"type must be one of {', '.join(CHECK_KINDS)} (got {value[:20]!r})")
        return value
    if key not in limits:
        raise UsageError(f"unknown checks setting {key[:40]!r} (known: {', '.join([*limits, 'type'])})")
    low, high = limits[key]
    if not value.isdigit() or not low <= int(value) <= high:
        raise UsageError(f"{key} must be a whole number of seconds from {low} to {high} (got {value[:20]!r})")
    return str(int(value))


def _stored_number(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw is not None and raw.strip() else default
    except ValueError:
        return default
