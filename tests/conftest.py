"""Shared fixtures: fresh settings in a temp data dir, a context, free ports, a git repo factory."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pushdock.context import Context
from pushdock.settings import Settings
from pushdock.state import Identity

ENGINE_RESTART = "engine_restart"

# git and ssh never prompt, even when the suite runs in a terminal: a prompt would hang a test until its timeout.
os.environ["GIT_TERMINAL_PROMPT"] = "0"
for _askpass in ("GIT_ASKPASS", "SSH_ASKPASS"):
    os.environ.pop(_askpass, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--engine-restart", action="store_true",
                     help="run only the tests that restart the Docker engine (make test runs them after the suite)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked engine_restart stop the shared Docker engine: they run alone, in their own pytest run
    (`pytest --engine-restart`), never beside other tests. Deselected here, not skipped."""
    wanted = bool(config.getoption("--engine-restart"))
    keep = [i for i in items if (i.get_closest_marker(ENGINE_RESTART) is not None) == wanted]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", ssh_host="127.0.0.1", ssh_port=free_port(), http_host="127.0.0.1",
        http_port=free_port(), proxy_port=free_port(), proxy_tls_port=free_port(), ready_timeout=20, stop_timeout=3,
    )


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return Context(settings=settings, identity=Identity(name="tester", role="admin", door="cli"))


def git_env(home: Path) -> dict[str, str]:
    """A scrubbed environment for the real git client: no user config, no GIT_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.com")
    return env


@pytest.fixture
def git_repo(tmp_path: Path):
    """Factory: a work tree with the given files committed on `main`."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = git_env(home)
    counter = iter(range(1000))

    def make(files: dict[str, str], name: str | None = None) -> Path:
        path = tmp_path / (name or f"work{next(counter)}")
        path.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
        commit(path, files, "initial")
        return path

    def commit(path: Path, files: dict[str, str], message: str = "change") -> str:
        for rel, content in files.items():
            f = path / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(content)
        subprocess.run(["git", "-C", str(path), "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", str(path), "commit", "-qm", message], check=True, env=env)
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, env=env,
                              capture_output=True, text=True).stdout.strip()

    make.commit = commit  # type: ignore[attr-defined]
    make.env = env  # type: ignore[attr-defined]
    return make
