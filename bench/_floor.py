"""The tiny app of the push benchmarks, and the floor a push-to-live is measured against (issue 22).

The app is FROM scratch with the host's static busybox serving body.txt (`httpd`), so a warm build is two
layers from cache and one new one. The floor is what the parts of a push cost alone, on this machine, in the
same run: C git pushing a commit over OpenSSH to C git-receive-pack behind a private sshd, a cached `docker
build` of the same context, and `docker run` of the image until it answers HTTP.
"""

from __future__ import annotations

import contextlib
import http.client
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness import Server

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY body.txt /www/index.html
EXPOSE 5000
CMD ["/bin/busybox", "httpd", "-f", "-p", "5000", "-h", "/www"]
"""


def tiny_context(path: Path, body: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", path / "busybox")
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "body.txt").write_text(body + "\n")
    return path


def tiny_repo(srv: Server, name: str, body: str) -> Path:
    """A git work tree of the tiny app, committed on main."""
    work = tiny_context(srv.base / f"work-{name}", body)
    srv.git("init", "-q", "-b", "main", cwd=work, check=True)
    srv.commit(work, "tiny app")
    return work


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _sshd(base: Path, pub: str) -> Iterator[int]:
    """A private OpenSSH server (own host key, config and port) letting `pub` in as this user."""
    port = _free_port()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host")], check=True)
    (base / "authorized").write_text(pub)
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host'}\nAuthorizedKeysFile {base / 'authorized'}\n"
        f"PidFile {base / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def git_push_floor(srv: Server, runs: int) -> list[float]:
    """Seconds of `git push` of a one-file commit of the tiny app over OpenSSH to a bare repo (C git on both
    ends), each run a new commit."""
    times = []
    with tempfile.TemporaryDirectory(prefix="pushdock-floor-") as tmp:
        base = Path(tmp)
        bare = base / "bare.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        work = tiny_context(base / "work", "floor 0")
        srv.git("init", "-q", "-b", "main", cwd=work, check=True)
        srv.commit(work, "floor 0")
        key = srv.base / "floor-key"
        if not key.exists():
            srv.new_key("floor-key")
        with _sshd(base, Path(str(key) + ".pub").read_text()) as port:
            argv = srv.ssh_argv(key)
            argv[argv.index("-p") + 1] = str(port)
            env = {**srv.git_env, "GIT_SSH_COMMAND": " ".join(argv)}
            remote = f"ssh://root@127.0.0.1:{port}{bare}"
            subprocess.run(["git", "push", "-q", remote, "main"], cwd=work, env=env, check=True, capture_output=True)
            for i in range(runs):
                srv.commit(work, f"floor {i + 1}", {"body.txt": f"floor {i + 1}\n"})
                t0 = time.monotonic()
                subprocess.run(["git", "push", "-q", remote, "main"], cwd=work, env=env, check=True,
                               capture_output=True)
                times.append(time.monotonic() - t0)
    return times


def build_and_run_floor(runs: int) -> tuple[list[float], list[float]]:
    """Seconds of a cached `docker build` of the tiny app with a changed body, and of `docker run` of the
    image until it answers HTTP on its published port (then removed), each alone."""
    builds, starts = [], []
    token = secrets.token_hex(4)  # bodies never built before: no layer of an earlier run is reused
    tag = f"pushdock-floor:{token}"
    name = f"pushdock-floor-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="pushdock-floor-") as tmp:
        ctx = tiny_context(Path(tmp) / "ctx", "floor 0")
        subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
        try:
            for i in range(runs):
                (ctx / "body.txt").write_text(f"floor {i + 1} {token}\n")
                t0 = time.monotonic()
                subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
                builds.append(time.monotonic() - t0)
                port = _free_port()
                t0 = time.monotonic()
                subprocess.run(["docker", "run", "-d", "--init", "--name", name, "-p", f"127.0.0.1:{port}:5000", tag],
                               check=True, capture_output=True)
                _until_answers(port)
                starts.append(time.monotonic() - t0)
                subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    return builds, starts


def _until_answers(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise AssertionError(f"the container on port {port} did not answer in {timeout:.0f}s")
