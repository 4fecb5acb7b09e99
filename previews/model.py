"""Preview settings per parent app and the records of its previews, as properties of plugin `previews`.

Settings (`previews:set APP KEY VALUE`): `ttl` (how long a preview lives without a new commit), `max` (open at
once), `env` (`KEY=VALUE` on top of the parent's env; `KEY=` removes KEY), `copy-secrets` (secret keys of the
parent that are copied after all), `database` (`empty` or `clone`). A record per pull request: its head, whether
it comes from a fork and which head was approved, its state, its services and times.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pushdock.errors import UsageError
from pushdock.state import validate_app_name, validate_env_key

if TYPE_CHECKING:
    from pushdock.context import Context

PLUGIN = "previews"
SETTINGS = ("ttl", "max", "env", "copy-secrets", "database")
DEFAULT_TTL = 7 * 24 * 3600
DEFAULT_MAX = 5
DATABASES = ("empty", "clone")
TTL = re.compile(r"^(\d{1,9})([smhdw]?)\Z")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# An env key is secret when one of its `_`-separated words is one of these, or its value is a URL with a
# password in it (a linked service's DATABASE_URL): Heroku review apps and Dokku leave such keys to the user.
SECRET_WORDS = frozenset({"SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASS", "PWD", "KEY",
                          "KEYS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "PRIVATE", "AUTH", "DSN", "SALT",
                          "CERT", "SIGNING"})
URL_WITH_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
SECTION = "-pr-"

# states of a record
WAITING = "waiting for approval"
QUEUED = "queued"
DEPLOYING = "deploying"
DEPLOYED = "deployed"


@dataclass(frozen=True)
class Settings:
    ttl: int = DEFAULT_TTL
    max: int = DEFAULT_MAX
    env: dict[str, str] = field(default_factory=dict)
    copy_secrets: tuple[str, ...] = ()
    database: str = "empty"


@dataclass(frozen=True)
class Preview:
    """One pull request's preview."""

    pr: int
    head: str  # the PR's head commit, the one to deploy
    fork: bool = False
    approved: str = ""  # the head commit `previews:approve` covers (forks)
    state: str = QUEUED
    deployed: str = ""  # the commit serving now
    opened: float = 0.0
    updated: float = 0.0  # the last new head: the ttl counts from here
    services: tuple[str, ...] = ()
    title: str = ""
    making: bool = False  # its app is being made: still True after a worker died half-way, then it is made again

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "services": list(self.services)}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Preview:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**{**known, "services": tuple(known.get("services", ()))})

    @property
    def runnable(self) -> bool:
        """Its head may be deployed: not from a fork, or approved at this very commit."""
        return not self.fork or self.approved == self.head


def preview_app(app: str, pr: int) -> str:
    """`APP-pr-N`, or UsageError if that is no valid app name (APP too long)."""
    return validate_app_name(f"{app}{SECTION}{pr}")


def parse_ttl(text: str) -> int:
    m = TTL.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"ttl must be a positive number of seconds, or with a unit: 30m, 12h, 7d, 2w (not "
                         f"{text[:20]!r})")
    return int(m.group(1)) * UNITS[m.group(2)]


def show_ttl(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def is_secret(key: str, value: str) -> bool:
    return bool(set(key.upper().split("_")) & SECRET_WORDS) or bool(URL_WITH_PASSWORD.match(value))


# -- settings -------------------------------------------------------------------------------------------------
def enabled(ctx: Context, app: str) -> bool:
    return ctx.state.get(PLUGIN, app, "enabled") == "yes"


def set_enabled(ctx: Context, app: str, on: bool) -> None:
    if on:
        ctx.state.set(PLUGIN, app, "enabled", "yes")
    else:
        ctx.state.delete(PLUGIN, app, "enabled")


def settings(ctx: Context, app: str) -> Settings:
    raw = ctx.state.get_json(PLUGIN, app, "settings", {}) or {}
    return Settings(ttl=int(raw.get("ttl", DEFAULT_TTL)), max=int(raw.get("max", DEFAULT_MAX)),
                    env=dict(raw.get("env", {})), copy_secrets=tuple(raw.get("copy-secrets", ())),
                    database=str(raw.get("database", "empty")))


def set_setting(ctx: Context, app: str, key: str, value: str) -> str:
    """Store one setting (checked first: a bad value changes nothing); what it is now, for the user."""
    raw = dict(ctx.state.get_json(PLUGIN, app, "settings", {}) or {})
    value = value.strip()
    if key == "ttl":
        raw["ttl"] = parse_ttl(value)
        shown = show_ttl(raw["ttl"])
    elif key == "max":
        if not value.isdigit() or not 1 <= int(value) <= 100:
            raise UsageError(f"max must be a whole number from 1 to 100, not {value[:20]!r}")
        raw["max"] = int(value)
        shown = value
    elif key == "env":
        name, eq, val = value.partition("=")
        if not eq:
            raise UsageError("env takes KEY=VALUE (KEY= removes an override)")
        validate_env_key(name)
        env = dict(raw.get("env", {}))
        if val:
            env[name] = val
        else:
            env.pop(name, None)
        raw["env"] = env
        shown = f"{name}=***" if val else f"{name} (removed)"
    elif key == "copy-secrets":
        keys = [k for k in re.split(r"[,\s]+", value) if k]
        for k in keys:
            validate_env_key(k)
        raw["copy-secrets"] = sorted(set(keys))
        shown = ",".join(raw["copy-secrets"]) or "(none)"
    elif key == "database":
        if value not in DATABASES:
            raise UsageError(f"database must be one of {', '.join(DATABASES)}, not {value[:20]!r}")
        raw["database"] = value
        shown = value
    else:
        raise UsageError(f"unknown previews setting {key!r}: use {', '.join(SETTINGS)}")
    ctx.state.set_secret_json(PLUGIN, app, "settings", raw)  # env overrides may hold secrets: 0600
    return shown


def preview_env(parent_env: dict[str, str], conf: Settings) -> dict[str, str]:
    """The parent's env without its secret keys (but those in copy-secrets), then the overrides."""
    kept = {k: v for k, v in parent_env.items() if k in conf.copy_secrets or not is_secret(k, v)}
    return kept | conf.env


# -- records --------------------------------------------------------------------------------------------------
@contextmanager
def locked(ctx: Context, app: str) -> Iterator[None]:
    """The records of `app`'s previews, read-modify-write under one lock."""
    with ctx.state.global_lock(f"previews-{app}"):
        yield


def records(ctx: Context, app: str) -> dict[int, Preview]:
    raw = ctx.state.get_json(PLUGIN, app, "records", {}) or {}
    return {int(n): Preview.of(r) for n, r in raw.items()}


def get(ctx: Context, app: str, pr: int) -> Preview | None:
    return records(ctx, app).get(pr)


def save(ctx: Context, app: str, preview: Preview) -> None:
    """Store one record (call under `locked`)."""
    raw = {str(n): p.to_dict() for n, p in records(ctx, app).items()}
    raw[str(preview.pr)] = preview.to_dict()
    ctx.state.set_json(PLUGIN, app, "records", raw)


def drop(ctx: Context, app: str, pr: int) -> None:
    raw = {str(n): p.to_dict() for n, p in records(ctx, app).items() if n != pr}
    ctx.state.set_json(PLUGIN, app, "records", raw)


def update(ctx: Context, app: str, pr: int, **changes: Any) -> Preview | None:
    """Change fields of a record under the lock; None if it is gone."""
    with locked(ctx, app):
        current = get(ctx, app, pr)
        if current is None:
            return None
        new = replace(current, **changes)
        save(ctx, app, new)
        return new


def expired(preview: Preview, conf: Settings, now: float | None = None) -> bool:
    return (now or time.time()) - (preview.updated or preview.opened) > conf.ttl


def parents(ctx: Context) -> list[str]:
    """Apps that have preview settings or records."""
    return [a for a in ctx.state.names(PLUGIN) if ctx.state.app_exists(a)]
