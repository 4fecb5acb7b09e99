"""Fixtures for the git server's tests: the receive handler served over git:// to the real git client."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.server import TCPGitServer, UploadPackHandler

from gitserver.backend import AppBackend
from gitserver.receive import PushdockReceivePack
from pushdock.context import Context


@pytest.fixture
def daemon(ctx: Context) -> Iterator[str]:
    """`git://127.0.0.1:PORT`: PushdockReceivePack and upload-pack over the app repos of `ctx`."""
    server = TCPGitServer(
        AppBackend(ctx), "127.0.0.1", 0,
        handlers={b"git-receive-pack": PushdockReceivePack, b"git-upload-pack": UploadPackHandler},
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"git://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


class Git:
    """The real git client with a scrubbed environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(["git", *args], check=False, cwd=cwd, env=self.env, capture_output=True, text=True,
                            timeout=60)
        if check and cp.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {cp.stderr}")
        return cp

    def popen(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(["git", *args], cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def head(self, cwd: Path) -> str:
        return self("rev-parse", "HEAD", cwd=cwd, check=True).stdout.strip()


@pytest.fixture
def git(git_repo) -> Git:  # type: ignore[no-untyped-def]
    return Git(git_repo.env)
