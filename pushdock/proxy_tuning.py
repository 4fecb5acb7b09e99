"""Proxy tuning: Dokku's `nginx:set` keys (`proxy:set APP KEY VALUE`, `nginx:set` is the same command).

Every value is checked here, before anything is written, and stored in its canonical form: one property,
`proxy/APP/tuning` (`proxy/--global/tuning` for the host-wide defaults), a JSON object of key -> value. An
app's value wins over the global one; a key set nowhere keeps the proxy's own default. The same object is
the `[proxy]` table of `pushdock.toml` in refs/meta/config. It lives in the core because the commands, the
settings file and the proxies all need it.

A value is never copied into proxy config as the user typed it: sizes and durations are digits and a unit,
forwarded-header values one of a few nginx variables, log paths a plain file name in an allowed folder.
Log paths are files the proxy's master process (root) writes on the host: admin only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pushdock.errors import UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.state import State

PLUGIN, PROPERTY = "proxy", "tuning"
SIZE = re.compile(r"^([0-9]{1,7})([kmg]?)\Z")
DURATION = re.compile(r"^([0-9]{1,6})([smh]?)\Z")
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}
MAX_BODY = 64 << 30  # 64g: anything above is a typo
MAX_TIMEOUT = 24 * 3600
MAX_HSTS_AGE = 2 * 365 * 24 * 3600
LOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.log\Z")
SYSTEM_LOG_DIRS = ("/var/log/nginx", "/var/log/pushdock")
BOOLEANS = {"true": "true", "false": "false", "on": "true", "off": "false", "1": "true", "0": "false"}
# nginx variables a forwarded header may take, and what caddy calls the same value (None: caddy's own default)
FORWARDED_VALUES: dict[str, dict[str, str | None]] = {
    "x-forwarded-for-value": {"$proxy_add_x_forwarded_for": None, "$remote_addr": "{http.request.remote.host}",
                              "$http_x_forwarded_for": "{http.request.header.X-Forwarded-For}"},
    "x-forwarded-port-value": {"$server_port": None,
                               "$http_x_forwarded_port": "{http.request.header.X-Forwarded-Port}"},
    "x-forwarded-proto-value": {"$scheme": None,
                                "$http_x_forwarded_proto": "{http.request.header.X-Forwarded-Proto}"},
}
LOG_FORMATS = ("combined", "pushdock")  # nginx's own, and the one nginx.conf defines (request and upstream times)


def _size(value: str, *, low: int, high: int, bounds: str) -> str:
    m = SIZE.match(value.lower())
    if not m:
        raise UsageError(f"{value!r} is not a size like 10m, 512k or 1g")
    n = int(m[1]) * SIZE_UNITS[m[2]]
    if n == 0 and low == 0:
        return "0"
    if not low <= n <= high:
        raise UsageError(f"{value!r}: the size must be {bounds}")
    return f"{int(m[1])}{m[2]}"


def body_size(value: str) -> str:
    """`10m`, `1g`, `512k`, `0` (no limit)."""
    return _size(value, low=0, high=MAX_BODY, bounds="0 (no limit) or up to 64g")


def buffer_size(value: str) -> str:
    return _size(value, low=1 << 10, high=1 << 20, bounds="between 1k and 1m")


def duration(value: str) -> str:
    """`60s`, `5m`, `1h` (a bare number is seconds), from 1 s to 24 h."""
    m = DURATION.match(value.lower())
    if not m:
        raise UsageError(f"{value!r} is not a duration like 60s, 5m or 1h")
    if not 1 <= int(m[1]) * SECONDS[m[2]] <= MAX_TIMEOUT:
        raise UsageError(f"{value!r}: the duration must be between 1s and 24h")
    return f"{int(m[1])}{m[2] or 's'}"


def boolean(value: str) -> str:
    out = BOOLEANS.get(value.lower())
    if out is None:
        raise UsageError(f"{value!r} is not true or false")
    return out


def hsts_age(value: str) -> str:
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) > MAX_HSTS_AGE:
        raise UsageError(f"{value!r} is not a number of seconds up to {MAX_HSTS_AGE}")
    return str(int(value))


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise UsageError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return parse


def log_path(value: str) -> str:
    """`off` or an absolute path `/DIR/NAME.log` (the folder is checked against the allowed ones by `check_paths`)."""
    if value == "off":
        return value
    path = Path(value)
    if not path.is_absolute() or str(path) != value or ".." in path.parts or not LOG_NAME.match(path.name):
        raise UsageError(f"{value!r} is not off or an absolute path to a NAME.log file")
    return value


@dataclass(frozen=True)
class Key:
    """One tuning key: how its value is checked, who may set it, which proxies apply it, and their default."""

    parse: Callable[[str], str]
    default: str
    proxies: tuple[str, ...] = ("nginx", "caddy")
    admin: bool = False


KEYS: dict[str, Key] = {
    "client-max-body-size": Key(body_size, "100m (caddy: no limit)"),
    "proxy-read-timeout": Key(duration, "60s (caddy: none)"),
    "proxy-buffer-size": Key(buffer_size, "4k", ("nginx",)),
    "hsts": Key(boolean, "false"),
    "hsts-max-age": Key(hsts_age, "15724800"),
    "hsts-include-subdomains": Key(boolean, "true"),
    "hsts-preload": Key(boolean, "false"),
    **{k: Key(_one_of(tuple(v)), next(iter(v))) for k, v in FORWARDED_VALUES.items()},
    "x-forwarded-ssl": Key(_one_of(("on", "off")), "(not sent)"),
    "access-log-format": Key(_one_of(LOG_FORMATS), "combined", ("nginx",)),
    "access-log-path": Key(log_path, "off", ("nginx",), admin=True),
    "error-log-path": Key(log_path, "the proxy's own error log", ("nginx",), admin=True),
}


def parse(key: str, value: str) -> str:
    """The canonical value of `key`; UsageError (one line) for an unknown key or a bad value."""
    spec = KEYS.get(key)
    if spec is None:
        raise UsageError(f"unknown key {key!r} (keys: {', '.join(KEYS)})")
    try:
        return spec.parse(value.strip())
    except UsageError as e:
        raise UsageError(f"{key}: {e.message}") from None


def check_values(values: Mapping[str, str]) -> dict[str, str]:
    """Every pair parsed (a settings file); UsageError on the first bad one."""
    return {key: parse(key, value) for key, value in sorted(values.items())}


def log_dirs(state: State) -> tuple[Path, ...]:
    """The folders a log path may be in: nginx's own logs folder and the system's log folders for it."""
    return (state.path("nginx", "logs").absolute(), *(Path(d) for d in SYSTEM_LOG_DIRS))


def check_paths(values: Mapping[str, str], state: State) -> None:
    """UsageError unless every log path is in an allowed folder that exists, and is not a link nor the
    proxy's own error log (pushdock reads it after each reload)."""
    allowed = log_dirs(state)
    for key in ("access-log-path", "error-log-path"):
        value = values.get(key)
        if value is None or value == "off":
            continue
        path = Path(value)
        if path.parent not in allowed:
            raise UsageError(f"{key}: {value} is not in an allowed folder ({', '.join(map(str, allowed))})")
        if path == allowed[0] / "error.log":
            raise UsageError(f"{key}: {value} is the proxy's own error log")
        if not path.parent.is_dir():
            raise UsageError(f"{key}: the folder {path.parent} does not exist")
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise UsageError(f"{key}: {value} is not a regular file")
    if values.get("error-log-path") == "off":
        raise UsageError("error-log-path: nginx cannot turn its error log off: give a path")


def stored(state: State, app: str) -> dict[str, str]:
    """The app's own values (GLOBAL: the host-wide defaults), as stored."""
    raw = state.get_json(PLUGIN, app, PROPERTY, {})
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def store(state: State, app: str, values: Mapping[str, str]) -> None:
    if values:
        state.set_json(PLUGIN, app, PROPERTY, dict(sorted(values.items())))
    else:
        state.delete(PLUGIN, app, PROPERTY)


def effective(state: State, app: str) -> dict[str, str]:
    """What the proxy applies to the app: the global values, overridden by the app's."""
    return {**stored(state, GLOBAL), **stored(state, app)}


def admin_keys(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The admin-only keys whose value differs between two sets of values."""
    return [k for k, spec in KEYS.items() if spec.admin and before.get(k) != after.get(k)]


def not_applied(proxy: str, values: Mapping[str, str]) -> list[str]:
    """The keys set in `values` that `proxy` does not apply."""
    return [k for k, spec in KEYS.items() if k in values and proxy not in spec.proxies]


def size_bytes(value: str) -> int:
    m = SIZE.match(value)
    assert m is not None
    return int(m[1]) * SIZE_UNITS[m[2]]


def duration_seconds(value: str) -> int:
    m = DURATION.match(value)
    assert m is not None
    return int(m[1]) * SECONDS[m[2]]


def hsts_header(values: Mapping[str, str]) -> str | None:
    """The Strict-Transport-Security value when hsts is on, else None."""
    if values.get("hsts") != "true":
        return None
    header = f"max-age={values.get('hsts-max-age', KEYS['hsts-max-age'].default)}"
    if values.get("hsts-include-subdomains", "true") == "true":
        header += "; includeSubDomains"
    if values.get("hsts-preload") == "true":
        header += "; preload"
    return header
