"""Domains: validation, the app's own domains, the global ones, and who already serves a name.

Properties (shared with the git-config door, which reads and writes the same JSON):
`domains/APP/list` (the app's own hostnames, lowercase), `domains/APP/default-disabled` (APP.DOMAIN
and APP.<global> are not served), `domains/--global/list` (global suffixes: every app is also served
at APP.<suffix>). `Context.domains(app)` combines them; every change re-routes through the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pushdock.apps import authorize_domains
from pushdock.errors import Conflict, NotFound, UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.context import Context

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"\A(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\Z")
MAX_DOMAINS = 100  # per app: every name is in the proxy's config


def validate_domain(domain: str, *, wildcard: bool = True) -> str:
    """Return `domain` lowercased (trailing dot dropped) if it is a hostname, else raise UsageError.

    `*.example.com` is accepted when `wildcard` (one label; exact names win over it in every proxy).
    """
    name = str(domain).lower().removesuffix(".")
    if len(name) > 253 or not HOSTNAME.match(name) or (not wildcard and name.startswith("*.")):
        shown = str(domain)[:70] + ("..." if len(str(domain)) > 70 else "")
        raise UsageError(f"invalid domain {shown!r}: use a hostname such as app.example.com")
    return name


def validate_domains(domains: Iterable[str], *, wildcard: bool = True) -> list[str]:
    """Every name validated, duplicates dropped, order kept; UsageError names the first bad one."""
    names = list(dict.fromkeys(validate_domain(d, wildcard=wildcard) for d in domains))
    if len(names) > MAX_DOMAINS:
        raise UsageError(f"too many domains ({len(names)}): at most {MAX_DOMAINS}")
    return names


@dataclass(frozen=True)
class AppDomains:
    """An app's domain settings as stored."""

    own: tuple[str, ...]
    default_disabled: bool

    def defaults(self, ctx: Context, app: str) -> list[str]:
        return [f"{app}.{s}" for s in (ctx.settings.domain, *global_domains(ctx))]


def read(ctx: Context, app: str) -> AppDomains:
    return AppDomains(tuple(ctx.state.get_json("domains", app, "list", [])),
                      bool(ctx.state.get("domains", app, "default-disabled")))


def write(ctx: Context, app: str, value: AppDomains) -> None:
    if value.own:
        ctx.state.set_json("domains", app, "list", list(value.own))
    else:
        ctx.state.delete("domains", app, "list")
    if value.default_disabled:
        ctx.state.set("domains", app, "default-disabled", "1")
    else:
        ctx.state.delete("domains", app, "default-disabled")


def global_domains(ctx: Context) -> list[str]:
    return list(ctx.state.get_json("domains", GLOBAL, "list", []))


def owners(ctx: Context, *, besides: str | None = None) -> dict[str, str]:
    """{domain: app} over every app but `besides` (one pass over the apps)."""
    index: dict[str, str] = {}
    for app in ctx.state.list_apps():
        if app != besides:
            for d in ctx.domains(app):
                index.setdefault(d, app)
    return index


def plan(ctx: Context, app: str, verb: str, names: list[str]) -> AppDomains:
    """The app's domain settings after `domains:VERB APP NAMES`; raises before anything is written."""
    cur = read(ctx, app)
    defaults = set(cur.defaults(ctx, app))
    own, disabled = list(cur.own), cur.default_disabled
    if verb == "add":
        for n in names:
            if n in defaults:
                disabled = False
            elif n not in own:
                own.append(n)
    elif verb == "remove":
        for n in names:
            if n in defaults:
                disabled = True
            elif n in own:
                own.remove(n)
            else:
                raise NotFound(f"app {app} has no domain {n}")
    elif verb == "set":
        own = [n for n in names if n not in defaults]
        disabled = not defaults.intersection(names)
    elif verb == "clear":
        own, disabled = [], False
    else:
        raise UsageError(f"unknown domains verb {verb!r}")
    authorize_domains(ctx, app, [n for n in own if n not in cur.own])
    after = AppDomains(tuple(own), disabled)
    served = ([] if disabled else sorted(defaults)) + own
    if not served:
        raise UsageError(f"app {app} would have no domain left: add one first")
    if len(served) > MAX_DOMAINS:
        raise UsageError(f"too many domains ({len(served)}): at most {MAX_DOMAINS}")
    new = [n for n in served if n not in ctx.domains(app)]
    if new:
        taken = owners(ctx, besides=app)
        for n in new:
            if n in taken:
                raise Conflict(f"domain {n} is already used by app {taken[n]}")
    return after


def plan_global(ctx: Context, verb: str, names: list[str]) -> list[str]:
    """The global domains after `domains:VERB --global NAMES`; Conflict if APP.NAME is another app's."""
    cur = global_domains(ctx)
    if verb == "add":
        after = cur + [n for n in names if n not in cur]
    elif verb == "remove":
        missing = [n for n in names if n not in cur]
        if missing:
            raise NotFound(f"{missing[0]} is not a global domain")
        after = [n for n in cur if n not in names]
    elif verb == "set":
        after = list(names)
    elif verb == "clear":
        after = []
    else:
        raise UsageError(f"unknown domains verb {verb!r}")
    added = [n for n in after if n not in cur]
    if added:
        taken = owners(ctx)
        for app in ctx.state.list_apps():
            if read(ctx, app).default_disabled:
                continue
            for suffix in added:
                other = taken.get(f"{app}.{suffix}")
                if other not in (None, app):
                    raise Conflict(f"domain {app}.{suffix} is already used by app {other}")
    return after


def report(ctx: Context, app: str) -> dict[str, str]:
    cur = read(ctx, app)
    defaults = " ".join(cur.defaults(ctx, app))
    return {
        "domains": " ".join(ctx.domains(app)),
        "default domains": defaults + (" (disabled)" if cur.default_disabled else ""),
        "own domains": " ".join(cur.own),
        "global domains": " ".join(global_domains(ctx)),
    }
