"""A Python plugin installed for real: `plugin:install PACKAGE` of an allow-listed package runs uv against
pushdock's own environment (this checkout's .venv), the plugin's command works from the next command on,
`plugin:disable` leaves it out, `plugin:uninstall` removes the package again, and the locked distributions
never move. The package is a wheel built here into a directory uv reads offline (UV_OFFLINE, UV_FIND_LINKS):
no index is reachable from the test machine. The .venv is shared with the test run: the package is removed
at the end whatever happens."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.harness import PUSHDOCK, ROOT

DIST, MODULE = "pushdock-hello-test", "pd_hello_test"
SOURCE = '''
import click
from pushdock.specs import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("hello-test")
    def hello():
        """Say hello (a test plugin)."""
        click.echo("hello from a plugin")
'''


def wheel(where: Path) -> Path:
    stem = DIST.replace("-", "_")
    info = f"{stem}-0.1.dist-info"
    files = {
        f"{MODULE}.py": SOURCE,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\nSummary: says hello\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[pushdock]\nhello = {MODULE}\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = where / f"{stem}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def installed() -> bool:
    cp = subprocess.run([sys.executable, "-c", f"import importlib.metadata as m; m.distribution({DIST!r})"],
                        capture_output=True)
    return cp.returncode == 0


@pytest.fixture
def env(tmp_path: Path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(wheels)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHDOCK_", "UV_"))}
    e.update(PUSHDOCK_DATA_DIR=str(tmp_path / "data"), PUSHDOCK_PLUGIN_ALLOW=f"left-pad, {DIST}",
             UV_OFFLINE="1", UV_FIND_LINKS=str(wheels), UV_NO_INDEX="1", PYTHONPATH=str(ROOT))
    assert not installed()
    yield e
    if installed():  # never leave it in the shared environment
        subprocess.run([str(ROOT / ".uv" / "bin" / "uv") if (ROOT / ".uv").exists() else "uv", "pip", "uninstall",
                        "--python", sys.executable, DIST], capture_output=True)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUSHDOCK, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_an_allow_listed_python_plugin_installs_runs_disables_and_uninstalls(env) -> None:
    locked = {d.metadata["name"]: d.version for d in md.distributions()}
    cp = cli(env, "plugin:install", DIST, "--name", "hello")
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert "Installed python plugin hello 0.1" in cp.stdout and "entry points: hello" in cp.stdout
    assert installed()
    assert cli(env, "hello-test").stdout == "hello from a plugin\n"
    listed = cli(env, "plugin:list").stdout
    assert "hello  python  0.1" in listed and "loaded" in listed

    assert cli(env, "plugin:disable", "hello").returncode == 0
    gone = cli(env, "hello-test")
    assert gone.returncode == 2 and "No such command 'hello-test'" in gone.stderr
    assert cli(env, "plugin:enable", "hello").returncode == 0
    assert cli(env, "hello-test").stdout == "hello from a plugin\n"

    cp = cli(env, "plugin:uninstall", "hello")
    assert cp.returncode == 0 and cp.stderr == "" and not installed()
    assert "hello" not in cli(env, "plugin:list").stdout
    assert {d.metadata["name"]: d.version for d in md.distributions()} == locked
