"""A successful command prints nothing on stderr: no dependency's warnings (asyncssh's DSA deprecation was one),
no progress noise. Each command runs as a user runs it, in a process of its own with the default warning filters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["version"], ["apps:create", "demo"], ["apps:list"], ["apps:report", "demo"],
    ["config:set", "--no-restart", "demo", "A=1"], ["config:show", "demo"], ["config:export", "demo"],
    ["domains:report", "demo"], ["releases", "demo"], ["ssh-keys:list"], ["tokens:list"], ["events", "-n", "3"],
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHDOCK_", "PYTHONWARNINGS"))}
    return {**keep, "PUSHDOCK_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}


def pushdock(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushdock.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)


def test_successful_commands_print_nothing_on_stderr(env: dict[str, str], tmp_path: Path) -> None:
    for args in COMMANDS:
        res = pushdock(env, *args)
        assert (res.returncode, res.stderr) == (0, ""), args


def test_ssh_keys_load_asyncssh_quietly(env: dict[str, str], tmp_path: Path) -> None:
    """ssh-keys:* import asyncssh, whose DSA types warn under cryptography 48+; a refused DSA key is one line."""
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    res = pushdock(env, "ssh-keys:add", "me", stdin=Path(f"{key}.pub").read_text())
    assert (res.returncode, res.stderr) == (0, "")
    subprocess.run(["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", str(tmp_path / "dsa")], check=True)
    res = pushdock(env, "ssh-keys:add", "weak", stdin=(tmp_path / "dsa.pub").read_text())
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: DSA"), res.stderr
