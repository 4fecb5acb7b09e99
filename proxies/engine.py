"""The machinery the three proxies share: resolve, queue, group-commit, keep the table of live routes.

A proxy subclass renders and applies; it implements `_commit(ctx, old, new, changed)`: make what
runs serve `new` (only the apps in `changed` differ from `old`), starting its process if needed, and
return once the new routes are live and the old upstreams drained — or raise PushdockError with
`old` still live (and its files as they were); and `pids(ctx)`: the processes that hold its sockets.
Everything else (validation, batching, conflicts, per-app fallback, ports) is here.

Ports (issue 13): a commit never asks the proxy to listen on a port another program holds (listen.py),
since the proxy could not bind it and every app would pay. A change that adds such a port to an app is
refused (Conflict). A port an app already had, taken while the proxy was down, is *parked*: the app is
served on its other ports, the others on theirs, and the port is listened on again by the first commit
after it is free (`parked.json`: what the live configuration leaves out, by app).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from proxies import listen, stable
from proxies.batch import Batcher, Change
from proxies.model import Listener, Route, Table, conflict, load_routes, load_table, ports_in_use, save_table
from proxies.routes import resolve
from pushdock.errors import Conflict, PushdockError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.routing import Upstream

LOCK_TIMEOUT = 120.0


class ProxyEngine:
    """Base of NginxProxy, CaddyProxy and TraefikProxy (the Proxy protocol in pushdock/proxy.py)."""

    name = "proxy"
    steer_upstreams = False  # route through stable addresses switched underneath (stable.py): no reload per deploy
    drain_timeout = stable.DRAIN_TIMEOUT  # after a switch underneath: until the old upstream's connections closed

    def __init__(self) -> None:
        self._local = threading.local()

    # -- layout -------------------------------------------------------------------------------------
    def root(self, ctx: Context) -> Path:
        """The proxy's own folder under the data dir."""
        return ctx.state.path(self.name).absolute()

    def _batcher(self, ctx: Context) -> Batcher:
        return Batcher(self.root(ctx), LOCK_TIMEOUT)

    def _table_path(self, ctx: Context) -> Path:
        return self.root(ctx) / "routes.json"

    def _parked_path(self, ctx: Context) -> Path:
        return self.root(ctx) / "parked.json"

    def _proxied_path(self, ctx: Context) -> Path:
        """The table as the proxy itself was last given it (stable addresses in place of upstreams)."""
        return self.root(ctx) / "proxied.json"

    # -- the Proxy protocol -------------------------------------------------------------------------
    def apply(self, ctx: Context, app: str, domains: list[str], upstreams: list[Upstream]) -> None:
        route = resolve(ctx, app, domains, upstreams)  # every check before anything is queued
        self._submit(ctx, [Change.new(app, route.to_json())])

    def remove(self, ctx: Context, app: str) -> None:
        self._submit(ctx, [Change.new(validate_app_name(app), None)])

    def routes(self, ctx: Context) -> Table:
        return load_table(self._table_path(ctx))

    @contextlib.contextmanager
    def batch(self, ctx: Context) -> Iterator[None]:
        """`apply`/`remove` calls inside return at once; all of them are committed together at exit."""
        if getattr(self._local, "deferred", None) is not None:
            yield
            return
        self._local.deferred = []
        try:
            yield
        finally:
            changes, self._local.deferred = self._local.deferred, None
            if changes:
                outcomes = self._batcher(ctx).submit(changes, lambda b: self._commit_batch(ctx, b))
                failed = [(c.app, e) for c in changes if (e := outcomes.get(c.id)) is not None]
                if failed:
                    shown = "; ".join(f"{app}: {e.message}" for app, e in failed[:5])
                    raise PushdockError(f"{len(failed)} app(s) not routed: {shown}")

    def ensure_running(self, ctx: Context) -> None:
        """Start the proxy if needed; re-render routes whose settings (ports, TLS port) changed."""
        with self._batcher(ctx).locked():
            table = self.routes(ctx)
            fresh = dict(table)
            for app, r in table.items():
                try:
                    fresh[app] = resolve(ctx, app, list(r.domains), list(r.upstreams))
                except PushdockError as e:
                    logger.warning("route kept as it was", app=app, error=str(e))
            changed = {app for app in table if fresh[app] != table[app]}
            self._commit_ports(ctx, table, fresh, changed)
            if changed:
                save_table(self._table_path(ctx), fresh)

    def serving(self, ctx: Context) -> bool:
        """Whether a process of this proxy serves the routes now."""
        return bool(self.report(ctx).get("running"))

    def report(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def pids(self, ctx: Context) -> list[int]:
        """The running processes of this proxy that hold its listening sockets (none known: every port it
        is to listen on is checked on every commit)."""
        return []

    def parked(self, ctx: Context) -> dict[str, list[int]]:
        """Ports of apps left out of the live configuration because another program holds them, by app."""
        try:
            raw = json.loads(self._parked_path(ctx).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(app): [int(p) for p in ports] for app, ports in raw.items()}

    def check_ports(self, ctx: Context, ports: list[int]) -> None:
        """Conflict if the proxy could not listen on one of `ports`: another program holds it (checked under
        the proxy's lock, so a port the proxy listens on meanwhile counts as its own)."""
        with self._batcher(ctx).locked():
            serving = self._serving(ctx, self.routes(ctx), self.parked(ctx))
            self._refuse(listen.taken(set(ports) - serving, lambda: self._own_pids(ctx)), ports)

    # -- internals ----------------------------------------------------------------------------------
    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        raise NotImplementedError

    def _own_pids(self, ctx: Context) -> list[int]:
        """Every process of this data dir's proxies (during `proxy:set --global` two of them share the ports)."""
        pids = []
        for proxy in ctx.bus.registry("proxies").values():
            if isinstance(proxy, ProxyEngine):
                with contextlib.suppress(PushdockError, OSError):
                    pids += proxy.pids(ctx)
        return pids

    def _serving(self, ctx: Context, live: Table, parked: dict[str, list[int]]) -> set[int]:
        """The ports the running proxy listens on: those of its live routes (none if it does not run)."""
        if not self.pids(ctx):
            return set()
        return {li.port for li in ports_in_use(_without(live, parked), Listener("http", ctx.settings.proxy_port))}

    @staticmethod
    def _refuse(taken: dict[int, str], ports: list[int] | set[int]) -> None:
        for port in sorted(set(ports) & set(taken)):
            raise Conflict(f"port {port} is {taken[port]}")

    def _commit_ports(self, ctx: Context, old: Table, new: Table, changed: set[str], *, again: bool = True) -> None:
        """`_commit`, with every port another program holds left out (see the module's docstring). A start
        that fails (a port taken between the check and the bind) is checked and tried once more."""
        default = Listener("http", ctx.settings.proxy_port)
        was = self.parked(ctx)
        wanted = {li.port for li in ports_in_use(new, default)} - self._serving(ctx, old, was)
        taken = listen.taken(wanted, lambda: self._own_pids(ctx))
        if default.port in taken:
            raise PushdockError(f"the proxy port {default.port} (PUSHDOCK_PROXY_PORT) is {taken[default.port]}")
        for app in sorted(changed & set(new)):
            had = {li.port for li in old[app].listeners} if app in old else set()
            self._refuse(taken, {li.port for li in new[app].listeners} - had)
        held = set(taken)  # mostly empty: 1000 apps are not walked for nothing
        now = {app: ps for app, r in (new.items() if held else ())
               if (ps := sorted({li.port for li in r.listeners} & held))}
        moved = {app for app in set(was) | set(now) if was.get(app) != now.get(app) and (app in old or app in new)}
        try:
            self._commit_steered(ctx, _without(old, was), _without(new, now), changed | moved)
        except PushdockError as e:
            if not again or self.pids(ctx):
                raise
            logger.warning("the proxy did not start: checking its ports again", error=e.message)
            self._commit_ports(ctx, old, new, changed, again=False)
            return
        if now != was:
            for app in sorted(now):
                logger.warning("port not served: another program holds it", app=app, ports=now[app])
            atomic_write(self._parked_path(ctx), json.dumps(now))

    def _commit_steered(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        """`_commit`, with steerable upstreams replaced by stable addresses (stable.py): a change of upstreams
        only is a switch of the kernel's rules, the proxy is not touched; then the old upstreams drain."""
        path = self._proxied_path(ctx)
        if not (self.steer_upstreams and stable.usable(ctx.settings.stable_upstreams)):
            if not path.exists():
                self._commit(ctx, old, new, changed)
                return
            saved = load_table(path)
            self._commit(ctx, saved, new, changed | {a for a in set(saved) | set(new) if saved.get(a) != new.get(a)})
            path.unlink(missing_ok=True)
            return
        st = stable.Stable(self.root(ctx))
        new_view, rules = st.view(new)
        if path.exists():  # only the changed apps' lines are read: the whole table only if the proxy is told
            scope, was = changed, load_routes(path, changed)
        else:
            scope, was = changed | set(old) | set(new), old
        to_proxy = {a for a in scope if was.get(a) != new_view.get(a)}
        running = bool(self.pids(ctx))
        had = st.installed() or {}
        touch = bool(to_proxy) or not running or not changed
        moving = {a for a in changed if a in old and a in new and old[a].upstreams != new[a].upstreams}
        with self._switching(ctx, moving if running else set()):
            try:  # before the proxy's change: what the old and the new routes need (rules of removed apps stay)
                st.install({**had, **rules} if touch else rules, force=not running)
            except stable.StableError as e:
                raise PushdockError(f"the upstreams could not be switched: {e}") from e
            if touch:
                old_view = load_table(path) if path.exists() else old
                try:
                    self._commit(ctx, old_view, new_view, to_proxy)
                except PushdockError:
                    with contextlib.suppress(stable.StableError):
                        st.install(had, force=True)
                    raise
                save_table(path, new_view)
                try:
                    st.install(rules)
                except stable.StableError as e:  # rules of ports no app uses any more are harmless
                    logger.warning("stale upstream rules kept", error=str(e))
            st.forget(set(old) - set(new))
            switched = {p for p, u in had.items() if rules.get(p) != u}
            if switched:
                st.drain(switched, self.drain_timeout)

    @contextlib.contextmanager
    def _switching(self, ctx: Context, apps: set[str]) -> Iterator[None]:
        """Around a switch underneath of these apps' upstreams, until the old ones drained: a proxy whose pooled
        upstream connections never rotate (caddy) sends the apps' requests past its pool meanwhile."""
        yield

    def _submit(self, ctx: Context, changes: list[Change]) -> None:
        deferred = getattr(self._local, "deferred", None)
        if deferred is not None:
            deferred.extend(changes)
            return
        outcomes = self._batcher(ctx).submit(changes, lambda b: self._commit_batch(ctx, b))
        for c in changes:
            error = outcomes.get(c.id)
            if error is not None:
                raise error

    def _commit_batch(self, ctx: Context, batch: list[Change]) -> dict[str, PushdockError | None]:
        """Commit every queued change at once; on failure, app by app, so each caller gets its own error."""
        table = self.routes(ctx)
        latest = {c.app: c for c in batch}  # queued in order: the last change of an app wins
        new = dict(table)
        failed: dict[str, PushdockError] = {}
        for app, c in latest.items():
            route = None if c.route is None else Route.from_json(c.route)
            if route is None:
                new.pop(app, None)
                continue
            had = new.get(app)  # a redeploy keeps its domains and ports: nothing new to clash with 1000 others
            same = had is not None and had.domains == route.domains and had.listeners == route.listeners
            err = None if same else conflict(new, route)
            if err is not None:
                failed[app] = err
            else:
                new[app] = route
        changed = {a for a in latest if a not in failed and table.get(a) != new.get(a)}
        try:
            self._commit_ports(ctx, table, new, changed)
        except PushdockError as e:
            if len(changed) <= 1:
                failed.update({a: e for a in latest if a not in failed})
                new = table
            else:
                new = self._one_by_one(ctx, table, new, sorted(changed), failed)
        if new != table:
            save_table(self._table_path(ctx), new)
        return {c.id: failed.get(c.app) for c in batch}

    def _one_by_one(self, ctx: Context, table: Table, wanted: Table, apps: list[str],
                    failed: dict[str, PushdockError]) -> Table:
        current = dict(table)
        for app in apps:
            trial = dict(current)
            if app in wanted:
                trial[app] = wanted[app]
            else:
                trial.pop(app, None)
            try:
                self._commit_ports(ctx, current, trial, {app})
                current = trial
            except PushdockError as e:
                failed[app] = e
        return current


def _without(table: Table, parked: dict[str, list[int]]) -> Table:
    """The table with the parked ports of each app left out of its listeners."""
    out = dict(table)
    for app, ports in parked.items():
        if app in out:
            r = out[app]
            out[app] = dataclasses.replace(r, listeners=tuple(li for li in r.listeners if li.port not in ports))
    return out
