"""nginx as pushdock's proxy: a private instance (own prefix, pid, port) with one file per app.

Reload procedure (research/proxies.md §1, §4): `nginx -t` with the new file in place, SIGHUP to the
master, wait until the control socket answers the new generation, then wait until every worker that
ran before the reload has exited. Only then may the caller stop the old upstreams: old workers keep
routing new requests for ~100 ms after the SIGHUP and hold keep-alive connections to the old upstream.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import stat
import string
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import proc
from pushdock.errors import Conflict, PushdockError, UsageError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.routing import Upstream

NGINX_FALLBACK = "/usr/sbin/nginx"
CLIENT_MAX_BODY = "100m"
START_TIMEOUT = 15.0  # until a started master answers on the control socket
LOAD_TIMEOUT = 15.0  # until a reloaded master answers the new generation
DRAIN_TIMEOUT = 35.0  # until pre-reload workers exit; above worker_shutdown_timeout (30 s)
LOCK_TIMEOUT = 120.0
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"\A(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\Z")
UPSTREAM_HOST = re.compile(r"\A[A-Za-z0-9.-]{1,253}\Z")
# The prefix is written unquoted into nginx.conf; anything else could break or inject config.
SAFE_PATH = re.compile(r"\A/[A-Za-z0-9_./+-]*\Z")
UNIX_PATH_MAX = 107


class _Template(string.Template):
    delimiter = "@"  # nginx config is full of `$` and `{}`


def _template(name: str) -> _Template:
    return _Template((resources.files("proxies") / "templates" / name).read_text())


def nginx_binary() -> str:
    """The nginx executable: on PATH, else Debian's /usr/sbin/nginx."""
    found = shutil.which("nginx") or (NGINX_FALLBACK if os.access(NGINX_FALLBACK, os.X_OK) else None)
    if found is None:
        raise PushdockError("nginx is not installed", hint="apt-get install nginx-light")
    return found


def validate_domain(domain: str) -> str:
    """Return `domain` lowercased if it is a hostname (optionally `*.` wildcard), else raise UsageError."""
    name = str(domain).lower().removesuffix(".")
    if len(name) > 253 or not HOSTNAME.match(name):
        raise UsageError(f"invalid domain {str(domain)[:70]!r}: use a hostname such as app.example.com")
    return name


def upstream_address(u: Upstream) -> str:
    """`host:port` for an nginx `server` line; raise UsageError for anything that is not."""
    port = u.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"invalid upstream port {port!r}")
    if ":" in u.host and re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", u.host):
        return f"[{u.host}]:{port}"
    if not UPSTREAM_HOST.match(u.host):
        raise UsageError(f"invalid upstream host {u.host!r}")
    return f"{u.host}:{port}"


def render_main(prefix: Path, port: int, *, user: str | None = None) -> str:
    """The main nginx.conf of the private instance rooted at `prefix`."""
    directive = f"user {user};" if user else "# user: the default (workers reach temp/, which nginx chowns to them)"
    return _template("nginx.conf.tmpl").substitute(prefix=prefix, port=int(port), user=directive)


def render_app(prefix: Path, app: str, domains: list[str], upstreams: list[Upstream]) -> str:
    """conf.d/<app>.conf: route `domains` to `upstreams` (load-balanced), or answer 503 with none."""
    names = list(dict.fromkeys(validate_domain(d) for d in domains))
    if not names:
        raise UsageError(f"app {app} has no domain to route")
    fields: dict[str, object] = {"prefix": prefix, "app": validate_app_name(app), "domains": " ".join(names)}
    if not upstreams:
        return _template("app-stopped.conf.tmpl").substitute(fields)
    servers = "\n".join(f"  server {upstream_address(u)} max_fails=0;" for u in sorted(set(upstreams)))
    return _template("app.conf.tmpl").substitute(
        fields, upstream=f"app-{app}", servers=servers, max_body=CLIENT_MAX_BODY
    )


class _Layout:
    """Every file of the private instance; all of them live in the prefix."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.pid = prefix / "nginx.pid"
        self.confd = prefix / "conf.d"
        self.listen = prefix / "listen.conf"
        self.gen_conf = prefix / "generation.conf"
        self.gen_file = prefix / "generation"
        self.sock = prefix / "control.sock"
        self.lock = prefix / "lock"
        self.error_log = prefix / "logs" / "error.log"

    def app_file(self, app: str) -> Path:
        return self.confd / f"{validate_app_name(app)}.conf"

    def argv(self, *extra: str) -> list[str]:
        return [nginx_binary(), *extra, "-e", str(self.error_log), "-p", str(self.prefix), "-c", str(self.conf)]


def _layout(ctx: Context) -> _Layout:
    prefix = ctx.state.path("nginx").absolute()
    if not SAFE_PATH.match(str(prefix)):
        raise PushdockError(f"the data dir path {str(prefix)!r} is unusable for nginx: use [A-Za-z0-9_./+-]")
    if len(str(prefix / "control.sock")) > UNIX_PATH_MAX:
        raise PushdockError(f"the data dir path {str(prefix)!r} is too long for nginx's control socket")
    for d in (prefix, prefix / "conf.d", prefix / "logs", prefix / "temp"):
        d.mkdir(parents=True, exist_ok=True)
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
        atomic_write(path, text)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _master_pid(lay: _Layout) -> int | None:
    """The pid of this prefix's live nginx master, None if none runs."""
    try:
        pid = int((_read(lay.pid) or "").strip())
    except ValueError:
        return None
    st, cmd = _stat(pid), _cmdline(pid)
    ours = cmd.startswith("nginx: master process") and cmd.endswith(f"-c {lay.conf}")
    return pid if ours and st is not None and st[0] != "Z" else None


def _workers(master: int) -> set[int]:
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st and st[1] == master and _cmdline(int(entry.name)) == "nginx: worker process":
                pids.add(int(entry.name))
    return pids


def _alive_child(pid: int, master: int) -> bool:
    st = _stat(pid)
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


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _disk_gen(lay: _Layout) -> int:
    try:
        return int((_read(lay.gen_file) or "0").strip())
    except ValueError:
        return 0


def _first_error(output: str) -> str:
    lines = [ln.removeprefix("nginx: ") for ln in output.splitlines() if ln.strip()]
    bad = [ln for ln in lines if re.match(r"\[(emerg|alert|crit)\]", ln)] or lines or ["no output"]
    return bad[0]


@contextlib.contextmanager
def _locked(lay: _Layout) -> Iterator[None]:
    """One writer of the prefix at a time, across processes."""
    with open(lay.lock, "a") as f:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Conflict(f"the nginx proxy is busy (waited {LOCK_TIMEOUT:.0f}s)") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class NginxProxy:
    """pushdock's own nginx: `apply` returns when the new routing is live and the old workers drained."""

    name = "nginx"

    def ensure_running(self, ctx: Context) -> None:
        lay = _layout(ctx)
        with _locked(lay):
            self._ensure(ctx, lay)

    def apply(self, ctx: Context, app: str, domains: list[str], upstreams: list[Upstream]) -> None:
        lay = _layout(ctx)
        text = render_app(lay.prefix, app, domains, upstreams)  # validates before anything is written
        with _locked(lay):
            master = self._ensure(ctx, lay)
            path = lay.app_file(app)
            if _read(path) == text:  # and live: _ensure reloaded if the live generation lagged
                logger.debug("nginx route unchanged", app=app)
                return
            self._commit(lay, {path: text}, master, domains=[validate_domain(d) for d in domains])
        logger.info("nginx route applied", app=app, upstreams=len(upstreams), gen=_disk_gen(lay))

    def remove(self, ctx: Context, app: str) -> None:
        lay = _layout(ctx)
        with _locked(lay):
            path = lay.app_file(app)
            if not path.exists():
                return
            master = _master_pid(lay)
            if master is None:
                path.unlink()
                return
            self._commit(lay, {path: None}, master)
        logger.info("nginx route removed", app=app, gen=_disk_gen(lay))

    def stop(self, ctx: Context) -> None:
        lay = _layout(ctx)
        with _locked(lay):
            master = _master_pid(lay)
            if master is None:
                return
            os.kill(master, signal.SIGQUIT)  # graceful: workers finish in-flight requests
            if not _wait(lambda: _master_pid(lay) != master, DRAIN_TIMEOUT + 5):
                raise PushdockError(f"nginx master {master} did not exit after SIGQUIT")
        logger.info("nginx stopped", pid=master)

    def report(self, ctx: Context) -> dict[str, Any]:
        lay = _layout(ctx)
        master = _master_pid(lay)
        return {
            "proxy": self.name,
            "running": master is not None,
            "pid": master,
            "port": ctx.settings.proxy_port,
            "generation": _disk_gen(lay),
            "live_generation": _live_gen(lay.sock) if master else None,
            "apps": sorted(p.stem for p in lay.confd.glob("*.conf")),
            "prefix": str(lay.prefix),
        }

    # -- internals (called with the prefix lock held) ---------------------------------------------
    def _ensure(self, ctx: Context, lay: _Layout) -> int:
        """Write the main config, start nginx or reload it if its config is not the live one; its pid."""
        changes: dict[Path, str | None] = {}
        wanted = {
            lay.conf: render_main(lay.prefix, ctx.settings.proxy_port, user=_worker_user(lay.prefix)),
            lay.listen: f"listen 0.0.0.0:{int(ctx.settings.proxy_port)};\n",
        }
        for path, text in wanted.items():
            if _read(path) != text:
                changes[path] = text
        master = _master_pid(lay)
        if master is None or changes or _live_gen(lay.sock) != _disk_gen(lay):
            self._commit(lay, changes, master)
        pid = _master_pid(lay)
        if pid is None:
            raise PushdockError("nginx is not running", hint=f"see {lay.error_log}")
        return pid

    def _commit(
        self, lay: _Layout, changes: dict[Path, str | None], master: int | None, domains: Sequence[str] = ()
    ) -> None:
        """Write `changes` (None deletes) and a new generation, validate, then start or reload and wait.

        A config nginx rejects is rolled back file by file, so the running config stays the valid one.
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
        if master is None:
            self._start(lay, gen)
        else:
            self._reload(lay, master, gen)

    def _start(self, lay: _Layout, gen: int) -> None:
        lay.sock.unlink(missing_ok=True)  # left behind by a master that was killed
        lay.pid.unlink(missing_ok=True)
        proc.run(lay.argv(), timeout=60)  # `daemon on`: returns once the master forked
        if not _wait(lambda: _master_pid(lay) is not None and _live_gen(lay.sock) == gen, START_TIMEOUT):
            raise PushdockError("nginx did not start", hint=f"see {lay.error_log}")
        logger.info("nginx started", pid=_master_pid(lay), gen=gen)

    def _reload(self, lay: _Layout, master: int, gen: int) -> None:
        old = _workers(master)
        started = time.monotonic()
        os.kill(master, signal.SIGHUP)  # after our own `nginx -t`: `nginx -s reload` would parse once more
        if not _wait(lambda: _live_gen(lay.sock) == gen, LOAD_TIMEOUT):
            raise PushdockError(
                f"nginx did not load configuration generation {gen}", hint=f"see {lay.error_log}"
            )
        if not _wait(lambda: not any(_alive_child(p, master) for p in old), DRAIN_TIMEOUT):
            logger.warning("nginx old workers still running", pids=sorted(old), timeout=DRAIN_TIMEOUT)
        logger.debug("nginx reloaded", gen=gen, seconds=round(time.monotonic() - started, 3))
