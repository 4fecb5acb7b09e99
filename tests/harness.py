"""A real `pushdock serve` in a temp data dir on free ports, driven with the real git and ssh clients."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUSHDOCK = [sys.executable, "-m", "pushdock.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def unique(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def http_get(port: int, host: str, path: str = "/", timeout: float = 5.0, keepalive: bool = False) -> tuple[int, str]:
    """GET through the proxy with a Host header; a fresh connection each time unless keepalive."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, **({} if keepalive else {"Connection": "close"})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace").strip()
    finally:
        conn.close()


@dataclass
class LoadResult:
    requests: int = 0
    failed: int = 0
    bodies: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    """A bounded load loop of non-keep-alive GETs (count- and time-bounded) in background threads."""

    def __init__(self, port: int, host: str, *, threads: int = 2, max_seconds: float = 120, max_requests: int = 200_000):
        self.port, self.host = port, host
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + max_seconds
        self._max = max_requests
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline and self.result.requests < self._max:
            try:
                status, body = http_get(self.port, self.host, timeout=10)
                ok = status == 200
                key = body if ok else f"HTTP {status}"
            except (OSError, http.client.HTTPException) as e:  # a reset, or an answer cut short
                ok, key = False, type(e).__name__
            with self._lock:
                self.result.requests += 1
                if ok:
                    self.result.bodies[key] += 1
                else:
                    self.result.failed += 1
                    self.result.errors[key] += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


class Server:
    """`pushdock serve` as a subprocess, plus helpers for the host CLI, ssh and git."""

    def __init__(self, base: Path, **env: str) -> None:
        self.base = base
        self.data = base / "data"
        self.home = base / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.ssh_port, self.http_port, self.proxy_port = free_port(), free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PUSHDOCK_"))}
        self.env.update(
            PUSHDOCK_DATA_DIR=str(self.data), PUSHDOCK_SSH_HOST="127.0.0.1", PUSHDOCK_SSH_PORT=str(self.ssh_port),
            PUSHDOCK_HTTP_HOST="127.0.0.1", PUSHDOCK_HTTP_PORT=str(self.http_port),
            PUSHDOCK_PROXY_PORT=str(self.proxy_port), PUSHDOCK_READY_TIMEOUT="30", PUSHDOCK_STOP_TIMEOUT="5",
            # EXPOSEd ports would be bound on the host as they are (`http:5000:5000`): servers side by side
            # would fight over them. A test that checks them sets it back on with a port of its own.
            PUSHDOCK_EXPOSE_PORTS="0",
            PYTHONPATH=str(ROOT), **env,
        )
        self.key = self.new_key("id_ed25519")
        self.git_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "HOME": str(self.home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "t@example.com",
            "GIT_SSH_COMMAND": " ".join(self.ssh_argv(self.key)),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, reconciled: bool = True) -> Server:
        """Start serve; wait until its doors are open and (unless `reconciled` is False) every app reconciled."""
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "serve.log", "ab")
        self.proc = subprocess.Popen([*PUSHDOCK, "serve"], env=self.env, stdout=log, stderr=log, cwd=ROOT)
        try:
            wait_port(self.ssh_port, 30)
            wait_port(self.proxy_port, 10)
            if reconciled:
                self.wait_reconciled()
        except TimeoutError:
            self.stop()
            raise AssertionError("serve did not start:\n" + (self.base / "serve.log").read_text()[-3000:]) from None
        return self

    def health(self) -> dict[str, Any]:
        import json

        status, body = http_get(self.http_port, "localhost", "/healthz")
        assert status == 200, (status, body)
        return dict(json.loads(body))

    def wait_reconciled(self, timeout: float = 180.0) -> None:
        """Until serve's reconcile pass (it runs beside the open doors) has done every app."""
        deadline = time.monotonic() + timeout
        while self.health().get("reconciling"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still reconciling after {timeout:.0f}s: {self.health()}")
            time.sleep(0.2)

    def stop_serve(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        """Stop serve, every proxy this data dir runs, and remove its containers and images."""
        self.stop_serve()
        if self.data.exists():
            self.cli("proxy:stop", "--all", check=False, timeout=60)
        cleanup_docker(self.data)

    # -- doors ------------------------------------------------------------------------------------
    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run([*PUSHDOCK, *args], env=self.env, input=input, capture_output=True, text=True,
                            cwd=ROOT, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(f"pushdock {' '.join(args)} failed ({cp.returncode}): {cp.stderr}{cp.stdout}")
        return cp

    def ssh_argv(self, key: Path) -> list[str]:
        return ["ssh", "-i", str(key), "-p", str(self.ssh_port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]

    def ssh(self, *args: str, key: Path | None = None, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # ssh joins its arguments with spaces and the server splits them like a shell: quote them
        argv = [*self.ssh_argv(key or self.key), "pushdock@127.0.0.1", shlex.join(args)]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.git_env)
        if check and cp.returncode != 0:
            raise AssertionError(f"ssh {' '.join(args)} failed ({cp.returncode}): {cp.stderr}{cp.stdout}")
        return cp

    def new_key(self, name: str) -> Path:
        """A fresh ed25519 key pair at base/NAME (and NAME.pub), not registered: see add_key."""
        key = self.base / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        return key

    def add_key(self, name: str = "tester", role: str = "admin", apps: str | None = None, key: Path | None = None) -> None:
        pub = Path(str(key or self.key) + ".pub").read_text()
        extra = ["--apps", apps] if apps else []
        self.cli("ssh-keys:add", name, "--role", role, *extra, input=pub)

    def remote(self, app: str) -> str:
        return f"ssh://pushdock@127.0.0.1:{self.ssh_port}/{app}"

    def git(self, *args: str, cwd: Path, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(["git", *args], cwd=cwd, env=self.git_env, capture_output=True, text=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {cp.stderr}")
        return cp

    def push(self, work: Path, app: str, refspec: str = "main", *extra: str) -> subprocess.CompletedProcess[str]:
        return self.git("push", *extra, self.remote(app), refspec, cwd=work)

    def get(self, app: str, path: str = "/") -> tuple[int, str]:
        return http_get(self.proxy_port, f"{app}.localhost", path)

    def load(self, app: str, **kw: float) -> Load:
        return Load(self.proxy_port, f"{app}.localhost", **kw)  # type: ignore[arg-type]

    def worker_peaks(self, command: str) -> list[int]:
        """Peak RSS (KiB) of every finished SSH worker that ran `command`, oldest first (its `worker done` line)."""
        log = (self.data / "logs" / "pushdock.log").read_text()
        return [int(m) for m in re.findall(rf"worker done .*'command': '{re.escape(command)}', 'peak_rss_kib': (\d+)",
                                           log)]

    # -- sample apps -------------------------------------------------------------------------------
    def app_repo(self, name: str, sample: str = "e2e-web", body: str | None = None) -> Path:
        """A git work tree with a copy of tests/apps/<sample>, committed on main."""
        work = self.base / f"work-{name}"
        shutil.copytree(ROOT / "tests" / "apps" / sample, work)
        if body is not None:
            (work / "body.txt").write_text(body + "\n")
        self.git("init", "-q", "-b", "main", cwd=work, check=True)
        self.commit(work, "initial")
        return work

    def commit(self, work: Path, message: str, files: dict[str, str] | None = None) -> str:
        for rel, content in (files or {}).items():
            (work / rel).write_text(content)
        self.git("add", "-A", cwd=work, check=True)
        self.git("commit", "-qm", message, "--allow-empty", cwd=work, check=True)
        return self.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()


@contextlib.contextmanager
def started(base: Path, key: str = "admin") -> Iterator[Server]:
    """A started serve with one admin key named `key` (a test module's shared server), stopped after."""
    srv = Server(base).start()
    try:
        srv.add_key(key)
        yield srv
    finally:
        srv.stop()


def cleanup_docker(data_dir: Path) -> None:
    """Remove the containers, networks and volumes (label pushdock.data-dir) and pushdock/* images of this data dir."""
    try:
        import docker

        client = docker.from_env()
    except Exception:
        return
    apps = set()
    for c in client.containers.list(all=True, filters={"label": f"pushdock.data-dir={data_dir}"}):
        apps.add(c.labels.get("pushdock.app"))
        with contextlib.suppress(Exception):
            c.remove(force=True)
    # services' private networks and data volumes (services/engine.py), once their containers are gone
    for coll in (client.networks, client.volumes):
        for item in coll.list(filters={"label": f"pushdock.data-dir={data_dir}"}):
            with contextlib.suppress(Exception):
                item.remove()
    repos = data_dir / "repos"
    if repos.exists():
        apps |= {p.name[:-4] for p in repos.iterdir() if p.name.endswith(".git")}
    for app in filter(None, apps):
        for img in client.images.list(name=f"pushdock/{app}"):
            with contextlib.suppress(Exception):
                client.images.remove(img.id, force=True)


def image_tags(app: str) -> list[str]:
    """The tags of the app's images (pushdock/APP:vN), sorted, from one engine call: the SDK's `images.list`
    inspects each image it listed, and one pruned in between (pruning ends a push, after its answer) is a 404."""
    import docker

    images = docker.from_env().api.images(name=f"pushdock/{app}")
    return sorted(t for i in images for t in i.get("RepoTags") or [] if t != "<none>:<none>")


class EngineEvents:
    """The engine's events from now on (`filters` as `docker events` takes them), collected by a thread for the
    `with` block: subscribe before the action, read after it.

    A query of past events (`since`, `until`) is answered from the engine's memory of its last 256 events, all
    containers' together (moby daemon/events/events.go: eventsLimit): on an engine busy with other tests (xdist
    workers, other users) an event a few seconds old may be gone from it. A live subscription misses nothing."""

    def __init__(self, filters: dict[str, Any]) -> None:
        import docker

        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        # since: the second before, from the engine's memory (fresh: still there); then live, with no gap between
        self._stream = docker.from_env().events(since=int(time.time()) - 1, decode=True, filters=filters)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed by __exit__
            for event in self._stream:
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def __enter__(self) -> EngineEvents:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._thread.join(5)

    def wait_for(self, match: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The events so far, once one of them matches `match` (a predicate), or as they are at `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: any(match(e) for e in self.events), timeout)
            return list(self.events)


def event_action(event: dict[str, Any]) -> str:
    return str(event.get("Action") or event.get("status") or "")


# -- schedulers, driven directly ---------------------------------------------------------------------------
class Out:
    """A Progress that keeps its lines."""

    def __init__(self) -> None:
        from pushdock.progress import Progress

        self.lines: list[str] = []
        self.progress = Progress(self.lines.append)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def upstream_get(u: object, path: str = "/") -> str:
    """GET an instance directly (not through the proxy): its body; the status must be 200."""
    import urllib.request

    with urllib.request.urlopen(f"http://{u}{path}", timeout=3) as r:
        assert r.status == 200
        return r.read().decode().strip()


class FakeRoute:
    """The proxy boundary: records each switch and what every upstream (and the old ones) answered at `path`."""

    path = "/"

    def __init__(self, still_serving: list | None = None) -> None:  # type: ignore[type-arg]
        self.calls: list[list] = []  # type: ignore[type-arg]
        self.answers: list[list[str]] = []
        self.still_serving = still_serving or []
        self.old_answers: list[str] = []

    def __call__(self, upstreams: list) -> None:  # type: ignore[type-arg]
        self.calls.append(list(upstreams))
        self.answers.append([upstream_get(u, self.path) for u in upstreams])
        self.old_answers = [upstream_get(u, self.path) for u in self.still_serving]


SWARM_LOCKS = Path(tempfile.gettempdir()) / "pushdock-tests-swarm"


@contextlib.contextmanager
def swarm_mode():  # type: ignore[no-untyped-def]
    """An active single-node swarm for the block, shared by every test process that asks at once (xdist
    workers): the first turns swarm mode on if it was off, the last one out turns it off again (with
    docker_gwbridge removed). Users hold a shared lock on one file; a mutex orders the checks."""
    import docker

    SWARM_LOCKS.mkdir(exist_ok=True)
    ours = SWARM_LOCKS / "started-by-tests"
    with open(SWARM_LOCKS / "mutex", "a") as mutex, open(SWARM_LOCKS / "users", "a") as users:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        try:
            engine = docker.from_env()
            if engine.info()["Swarm"]["LocalNodeState"] == "inactive":
                engine.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{free_port()}")
                ours.touch()
            fcntl.flock(users, fcntl.LOCK_SH)
        finally:
            fcntl.flock(mutex, fcntl.LOCK_UN)
        assert engine.info()["Swarm"]["ControlAvailable"], "this engine must be a swarm manager"
        try:
            yield
        finally:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            try:
                fcntl.flock(users, fcntl.LOCK_UN)
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else in the block
                    last = True
                except BlockingIOError:
                    last = False
                if last and ours.exists():
                    _leave_swarm()
                    ours.unlink()
                fcntl.flock(users, fcntl.LOCK_UN)
            finally:
                fcntl.flock(mutex, fcntl.LOCK_UN)


def _leave_swarm() -> None:
    import docker

    engine = docker.from_env()  # the engine may have restarted meanwhile
    engine.swarm.leave(force=True)
    for _ in range(50):
        try:
            engine.networks.get("docker_gwbridge").remove()
            break
        except docker.errors.NotFound:
            break
        except docker.errors.APIError:  # task containers still detaching
            time.sleep(0.2)
