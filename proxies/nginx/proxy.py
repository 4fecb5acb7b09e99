"""nginx as pushdock's proxy: a private instance (own prefix, pid, control socket) with one file per app.

Reload procedure (research/proxies.md §1, §4): `nginx -t` with the new files in place, SIGHUP to the
master, wait until the control socket answers the new generation, then wait until every worker that
ran before the reload has exited. Only then may the caller stop the old upstreams: old workers keep
routing new requests for ~100 ms after the SIGHUP and hold keep-alive connections to the old upstream.
Every reload closes idle client keep-alive connections, so changes are group-committed (engine.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from proxies import procs, stable
from proxies.domains import validate_domain
from proxies.engine import ProxyEngine
from proxies.model import Listener, Table, ports_in_use
from proxies.nginx.config import cert_paths, render_app, render_main, render_ports
from proxies.routes import upstream_address
from pushdock import proc
from pushdock.errors import Conflict, PushdockError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context

__all__ = ["NginxProxy", "nginx_binary", "render_app", "render_main", "render_ports", "upstream_address",
           "validate_domain"]

NGINX_FALLBACK = "/usr/sbin/nginx"
START_TIMEOUT = 15.0  # until a started master answers on the control socket
LOAD_TIMEOUT = 15.0  # until a reloaded master answers the new generation
DRAIN_TIMEOUT = 35.0  # until pre-reload workers exit; above worker_shutdown_timeout (30 s)
# The prefix is written unquoted into nginx.conf; anything else could break or inject config.
SAFE_PATH = re.compile(r"\A/[A-Za-z0-9_./+-]*\Z")
UNIX_PATH_MAX = 107


def nginx_binary() -> str:
    """The nginx executable: on PATH, else Debian's /usr/sbin/nginx."""
    found = shutil.which("nginx") or (NGINX_FALLBACK if os.access(NGINX_FALLBACK, os.X_OK) else None)
    if found is None:
        raise PushdockError("nginx is not installed", hint="apt-get install nginx-light")
    return found


class _Layout:
    """Every file of the private instance; all of them live in the prefix."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.pid = prefix / "nginx.pid"
        self.confd = prefix / "conf.d"
        self.ports = prefix / "ports.conf"
        self.gen_conf = prefix / "generation.conf"
        self.gen_file = prefix / "generation"
        self.sock = prefix / "control.sock"
        self.error_log = prefix / "logs" / "error.log"

    def app_file(self, app: str) -> Path:
        return self.confd / f"{validate_app_name(app)}.conf"

    def argv(self, *extra: str) -> list[str]:
        return [nginx_binary(), *extra, "-e", str(self.error_log), "-p", str(self.prefix), "-c", str(self.conf)]


def _layout(prefix: Path) -> _Layout:
    if not SAFE_PATH.match(str(prefix)):
        raise PushdockError(f"the data dir path {str(prefix)!r} is unusable for nginx: use [A-Za-z0-9_./+-]")
    if len(str(prefix / "control.sock")) > UNIX_PATH_MAX:
        raise PushdockError(f"the data dir path {str(prefix)!r} is too long for nginx's control socket")
    for d in (prefix, prefix / "conf.d", prefix / "certs", prefix / "logs", prefix / "temp"):
        d.mkdir(parents=True, exist_ok=True)
    (prefix / "certs").chmod(0o700)
    return _Layout(prefix)


def _worker_user(prefix: Path) -> str | None:
    """`root` only when running as root and the workers' default user could not reach prefix/temp."""
    if os.geteuid() != 0:
        return None
    for d in (prefix, *prefix.parents):
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return "root"
    return None


# -- processes, read from /proc ----------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _put(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, text, mode=0o600 if path.suffix == ".key" else 0o644)


def _master_pid(lay: _Layout) -> int | None:
    """The pid of this prefix's live nginx master, None if none runs."""
    try:
        pid = int((_read(lay.pid) or "").strip())
    except ValueError:
        return None
    st, cmd = procs.stat(pid), procs.cmdline(pid)
    ours = cmd.startswith("nginx: master process") and cmd.endswith(f"-c {lay.conf}")
    return pid if ours and st is not None and st[0] != "Z" else None


def _workers(master: int) -> set[int]:
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = procs.stat(int(entry.name))
            if st and st[1] == master and procs.cmdline(int(entry.name)) == "nginx: worker process":
                pids.add(int(entry.name))
    return pids


def _alive_child(pid: int, master: int) -> bool:
    st = procs.stat(pid)
    return st is not None and st[0] != "Z" and st[1] == master


def _live_gen(sock: Path) -> int | None:
    """The generation the control listener answers, None if nginx does not answer."""
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"GET /__gen HTTP/1.0\r\nHost: control\r\n\r\n")
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    try:
        return int(body.strip())
    except ValueError:
        return None


def _disk_gen(lay: _Layout) -> int:
    try:
        return int((_read(lay.gen_file) or "0").strip())
    except ValueError:
        return 0


def _first_error(output: str) -> str:
    lines = [ln.removeprefix("nginx: ") for ln in output.splitlines() if ln.strip()]
    bad = [ln for ln in lines if re.match(r"\[(emerg|alert|crit)\]", ln)] or lines or ["no output"]
    return bad[0]


class NginxProxy(ProxyEngine):
    """pushdock's own nginx: `apply` returns when the new routing is live and the old workers drained."""

    name = "nginx"
    steer_upstreams = True

    def stop(self, ctx: Context) -> None:
        lay = _layout(self.root(ctx))
        with self._batcher(ctx).locked():
            master = _master_pid(lay)
            if master is None:
                stable.Stable(self.root(ctx)).remove()
                return
            os.kill(master, signal.SIGQUIT)  # graceful: workers finish in-flight requests
            if not procs.wait(lambda: _master_pid(lay) != master, DRAIN_TIMEOUT + 5):
                raise PushdockError(f"nginx master {master} did not exit after SIGQUIT")
            stable.Stable(self.root(ctx)).remove()
        logger.info("nginx stopped", pid=master)

    def report(self, ctx: Context) -> dict[str, Any]:
        lay = _layout(self.root(ctx))
        master = _master_pid(lay)
        table = self.routes(ctx)
        return {
            "proxy": self.name,
            "running": master is not None,
            "pid": master,
            "port": ctx.settings.proxy_port,
            "tls_port": ctx.settings.proxy_tls_port,
            "listening": [str(li) for li in ports_in_use(table, Listener("http", ctx.settings.proxy_port))],
            "parked": self.parked(ctx),
            "generation": _disk_gen(lay),
            "live_generation": _live_gen(lay.sock) if master else None,
            "apps": sorted(table),
            "prefix": str(lay.prefix),
        }

    def describe(self, ctx: Context, app: str) -> dict[str, str]:
        return {"config file": str(_layout(self.root(ctx)).app_file(app))}

    def pids(self, ctx: Context) -> list[int]:
        master = _master_pid(_layout(self.root(ctx)))  # the master holds every listening socket
        return [] if master is None else [master]

    # -- internals (called with the proxy's lock held) ------------------------------------------------
    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        lay = _layout(self.root(ctx))
        wanted: dict[Path, str | None] = {
            lay.conf: render_main(lay.prefix, user=_worker_user(lay.prefix)),
            lay.ports: render_ports(ports_in_use(new, Listener("http", ctx.settings.proxy_port))),
        }
        for app in sorted(changed):
            route = new.get(app)
            crt, key = cert_paths(lay.prefix, app)
            wanted[lay.app_file(app)] = None if route is None else render_app(lay.prefix, route)
            pems = route.cert.read() if route is not None and route.cert is not None and route.https else None
            wanted[crt], wanted[key] = pems if pems else (None, None)
        changes = {path: text for path, text in wanted.items() if _read(path) != text}
        master = _master_pid(lay)
        if master is not None and not changes and _live_gen(lay.sock) == _disk_gen(lay):
            return
        domains = [d for app in changed if app in new for d in new[app].domains]
        self._write_and_load(lay, changes, master, domains)
        logger.info("nginx routes applied", apps=len(changed), gen=_disk_gen(lay))

    def _write_and_load(
        self, lay: _Layout, changes: dict[Path, str | None], master: int | None, domains: list[str]
    ) -> None:
        """Write `changes` (None deletes) and a new generation, validate, then start or reload and wait.

        If nginx rejects the files, or the start or reload fails for any reason (a port taken after it was
        checked), every file is put back; after a failed reload the master is reloaded once more on the
        files put back, under a generation of its own, so what runs is what is on disk.
        """
        gen = _disk_gen(lay) + 1
        changes = {**changes, lay.gen_conf: f'return 200 "{gen}\\n";\n', lay.gen_file: f"{gen}\n"}
        before = {path: _read(path) for path in changes}
        for path, text in changes.items():
            _put(path, text)
        try:
            res = proc.run(lay.argv("-t"), check=False, timeout=120)
            if res.returncode != 0:
                raise PushdockError(f"nginx rejected the configuration: {_first_error(res.stderr)}")
            for d in domains:
                if f'conflicting server name "{d}"' in res.stderr:
                    raise Conflict(f"domain {d} is already routed to another app")
        except PushdockError:
            for path, text in before.items():
                _put(path, text)
            raise
        try:
            if master is None:
                self._start(lay, gen)
            else:
                self._reload(lay, master, gen)
        except PushdockError as e:
            logger.warning("nginx did not take the new configuration: files put back", error=e.message)
            for path, text in before.items():
                if path not in (lay.gen_conf, lay.gen_file):  # generations only go up: never one number twice
                    _put(path, text)
            self._resync(lay, gen + 1)
            raise

    def _resync(self, lay: _Layout, gen: int) -> None:
        """After a failed start or reload: have a running master load the files on disk as generation `gen`."""
        _put(lay.gen_conf, f'return 200 "{gen}\\n";\n')
        _put(lay.gen_file, f"{gen}\n")
        master = _master_pid(lay)
        if master is None:
            return
        try:
            # a master still retrying the failed reload (bind: 5 tries, 0.5 s apart) takes this SIGHUP after
            self._reload(lay, master, gen, fail_fast=False)
        except PushdockError as e:
            logger.error("nginx did not reload the configuration put back", error=e.message)

    def _start(self, lay: _Layout, gen: int) -> None:
        lay.sock.unlink(missing_ok=True)  # left behind by a master that was killed
        lay.pid.unlink(missing_ok=True)
        proc.run(lay.argv(), timeout=60)  # `daemon on`: returns once the master forked
        if not procs.wait(lambda: _master_pid(lay) is not None and _live_gen(lay.sock) == gen, START_TIMEOUT):
            raise PushdockError("nginx did not start", hint=f"see {lay.error_log}")
        logger.info("nginx started", pid=_master_pid(lay), gen=gen)

    def _reload(self, lay: _Layout, master: int, gen: int, *, fail_fast: bool = True) -> None:
        """SIGHUP, then wait for generation `gen` and the old workers' exit. `fail_fast`: give up at the
        first [emerg] nginx logs (it keeps the configuration it ran); else wait the whole LOAD_TIMEOUT."""
        old = _workers(master)
        started = time.monotonic()
        offset = _size(lay.error_log)
        failure: list[str] = []

        def loaded() -> bool:
            if _live_gen(lay.sock) == gen:
                return True
            if fail_fast:
                failure.extend(_emerg_since(lay.error_log, offset)[:1])  # the master keeps the old configuration
            return bool(failure)

        os.kill(master, signal.SIGHUP)  # after our own `nginx -t`: `nginx -s reload` would parse once more
        if not procs.wait(loaded, LOAD_TIMEOUT) or failure:
            reason = f": {failure[0]}" if failure else ""
            raise PushdockError(f"nginx did not load configuration generation {gen}{reason}",
                                hint=f"see {lay.error_log}")
        if not procs.wait(lambda: not any(_alive_child(p, master) for p in old), DRAIN_TIMEOUT):
            logger.warning("nginx old workers still running", pids=sorted(old), timeout=DRAIN_TIMEOUT)
        logger.debug("nginx reloaded", gen=gen, seconds=round(time.monotonic() - started, 3))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _emerg_since(log: Path, offset: int) -> list[str]:
    """The [emerg] messages nginx logged after `offset` (a reload it gave up: bind() failed, ...)."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read(1 << 20).decode(errors="replace")
    except FileNotFoundError:
        return []
    return [m.group(1).strip()[:300] for m in re.finditer(r"\[emerg\] \d+#\d+: (.*)", text)]
