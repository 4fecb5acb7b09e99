"""`service:install` / `service:uninstall`: the systemd unit (checked by the real `systemd-analyze verify`),
the environment file that is the admin's, idempotence, and bad options as one line.

This machine runs no systemd (no /run/systemd/system), so the commands take the files-only path here; the
systemctl calls of a systemd host are checked through `service.install(..., booted=True)` with a runner that
records them instead of running systemctl (the one thing that cannot run here).
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from pushdock import service
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings
from pushdock.state import Identity

VENV_PUSHDOCK = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "pushdock"


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(argv), ctx, out, err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "units", tmp_path / "etc" / "pushdock.env"


def install(ctx: Context, dirs: tuple[Path, Path], *extra: str) -> tuple[int, str, str]:
    return run(ctx, "service:install", "--unit-dir", str(dirs[0]), "--env-file", str(dirs[1]), *extra)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)


def test_the_unit_passes_systemd_analyze_verify(ctx: Context, dirs: tuple[Path, Path]) -> None:
    rc, out, err = install(ctx, dirs)
    assert (rc, err) == (0, ""), err
    unit = dirs[0] / "pushdock.service"
    res = verify(unit)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    # verify does report problems (a bad setting is a warning with status 0): the check above can fail
    broken = unit.with_name("broken.service")
    broken.write_text(unit.read_text().replace("KillMode=process", "KillMode=everything"))
    assert "kill mode" in verify(broken).stderr


def test_the_unit_runs_this_installs_serve_after_docker_and_never_kills_the_proxy(
        ctx: Context, dirs: tuple[Path, Path]) -> None:
    assert install(ctx, dirs)[0] == 0
    text = (dirs[0] / "pushdock.service").read_text()
    lines = set(text.splitlines())
    assert {"After=docker.service network-online.target", "Requires=docker.service",
            "Wants=network-online.target", "Restart=on-failure", "KillMode=process",
            f"EnvironmentFile={dirs[1]}", f"ExecStart={VENV_PUSHDOCK} serve",
            "WantedBy=multi-user.target"} <= lines
    assert os.access(VENV_PUSHDOCK, os.X_OK)
    assert "PrivateTmp" not in text.replace("Not PrivateTmp", "")  # builds hand temp dirs to dockerd
    assert stat.S_IMODE((dirs[0] / "pushdock.service").stat().st_mode) == 0o644


def test_the_env_file_documents_every_setting_and_keeps_the_installers(tmp_path: Path,
                                                                      dirs: tuple[Path, Path]) -> None:
    settings = Settings(data_dir=tmp_path / "data", domain="apps.example.com", log_level='DEBUG "$HOME"')
    ctx = Context(settings=settings)
    assert install(ctx, dirs)[0] == 0
    env = dirs[1]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    for name in Settings.model_fields:
        assert f"PUSHDOCK_{name.upper()}=" in text, name
    assert "# PUSHDOCK_SSH_PORT=2222" in text.splitlines()
    # read back as systemd and a shell do: the installer's values, uncommented; the rest stay defaults
    shown = subprocess.run(["bash", "-c", 'set -a; . "$1"; env', "-", str(env)], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "HOME": "/nowhere"}, check=True).stdout.splitlines()
    assert {ln for ln in shown if ln.startswith("PUSHDOCK_")} == {
        f"PUSHDOCK_DATA_DIR={tmp_path / 'data'}", "PUSHDOCK_DOMAIN=apps.example.com",
        'PUSHDOCK_LOG_LEVEL=DEBUG "$HOME"'}


def test_install_and_uninstall_are_idempotent_and_keep_the_env_file(ctx: Context, dirs: tuple[Path, Path]) -> None:
    unit_dir, env = dirs
    unit = unit_dir / "pushdock.service"
    assert install(ctx, dirs)[0] == 0
    env.write_text("PUSHDOCK_DOMAIN=mine.example.com\n")  # the admin's edit
    os.chmod(env, 0o640)
    first = unit.read_bytes()
    rc, out, err = install(ctx, dirs)
    assert (rc, err) == (0, "")
    assert f"Kept {env}" in out
    assert unit.read_bytes() == first
    assert env.read_text() == "PUSHDOCK_DOMAIN=mine.example.com\n" and stat.S_IMODE(env.stat().st_mode) == 0o640
    for _ in range(2):
        rc, out, err = run(ctx, "service:uninstall", "--unit-dir", str(unit_dir), "--env-file", str(env))
        assert (rc, err) == (0, ""), err
        assert not unit.exists()
        assert env.read_text() == "PUSHDOCK_DOMAIN=mine.example.com\n"
        assert f"Kept the data dir {ctx.settings.data_dir} and {env}" in out
        assert ctx.settings.data_dir.is_dir()
    assert "not installed" in out


def test_no_systemd_here_means_files_and_one_line_saying_what_to_run(ctx: Context, dirs: tuple[Path, Path]) -> None:
    assert not service.systemd_running()  # this machine: PID 1 is not systemd
    rc, out, err = install(ctx, dirs)
    assert (rc, err) == (0, "")
    hint = [ln for ln in out.splitlines() if "systemctl" in ln]
    assert hint == ["-----> systemd is not running here: on the server, run "
                    "`systemctl daemon-reload && systemctl enable --now pushdock`"]


@pytest.mark.parametrize(("enable", "start", "calls"), [
    (True, True, [["daemon-reload"], ["enable", "--now", "pushdock.service"]]),
    (True, False, [["daemon-reload"], ["enable", "pushdock.service"]]),
    (False, True, [["daemon-reload"], ["start", "pushdock.service"]]),
    (False, False, [["daemon-reload"]]),
])
def test_with_systemd_running_install_reloads_enables_and_starts(
        settings: Settings, dirs: tuple[Path, Path], enable: bool, start: bool, calls: list[list[str]]) -> None:
    ran: list[list[str]] = []
    target = service.Target(unit_dir=dirs[0], env_file=dirs[1], enable=enable, start=start)
    service.install(settings, target, booted=True, run=lambda argv: ran.append(list(argv)))
    assert ran == calls
    ran.clear()
    said = service.uninstall(settings, target, booted=True, run=lambda argv: ran.append(list(argv)))
    assert ran == [["disable", "--now", "pushdock.service"], ["daemon-reload"]]
    assert not target.unit.exists() and target.env_file.exists()
    assert "the proxy and the apps keep running" in said[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--unit-dir", "units"], "error: --unit-dir must be an absolute path, not 'units'"),
    (["--env-file", "pushdock.env"], "error: --env-file must be an absolute path, not 'pushdock.env'"),
    (["--env-file", "{tmp}"], "error: --env-file {tmp} is a directory, not a file"),
    (["--unit-dir", "{tmp}/file"], "error: --unit-dir {tmp}/file is not a directory"),
    (["--no-such-option"], "error: No such option '--no-such-option'."),
])
def test_bad_options_are_one_line_and_write_nothing(ctx: Context, tmp_path: Path, argv: list[str],
                                                     message: str) -> None:
    (tmp_path / "file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    full = ["--unit-dir", str(tmp_path / "u"), "--env-file", str(tmp_path / "e.env"), *argv]
    rc, out, err = run(ctx, "service:install", *full)
    assert rc == 2
    assert err.splitlines() == [message.replace("{tmp}", str(tmp_path))]
    assert sorted(p for p in tmp_path.rglob("*") if "data" not in p.parts) == [
        p for p in before if "data" not in p.parts]


@pytest.mark.parametrize("where", ["unit", "env"])
def test_an_unwritable_place_is_one_error_line_a_hint_and_nothing_written(ctx: Context, tmp_path: Path,
                                                                          where: str) -> None:
    (tmp_path / "afile").write_text("")  # a path under a file cannot be made, even by root
    unit_dir = tmp_path / ("afile" if where == "unit" else "ok") / "units"
    env = tmp_path / ("afile" if where == "env" else "ok") / "pushdock.env"
    rc, _, err = run(ctx, "service:install", "--unit-dir", str(unit_dir), "--env-file", str(env))
    assert rc == 1
    failed = unit_dir / "pushdock.service" if where == "unit" else env
    lines = err.splitlines()
    assert len(lines) == 2 and lines[1] == "hint: run as root"
    assert re.fullmatch(rf"error: cannot write {re.escape(str(failed))}: (Not a directory|File exists)", lines[0])
    assert not (unit_dir / "pushdock.service").exists() and not env.exists()


@pytest.mark.parametrize("verb", ["install", "uninstall"])
def test_only_the_host_door_manages_the_service(settings: Settings, tmp_path: Path, verb: str) -> None:
    """The SSH door (an admin key) is refused, as for `serve`; the real SSH round trip is in
    tests/integration/test_gitserver_admin.py::test_service_commands_are_host_only."""
    ctx = Context(settings=settings, identity=Identity(name="admin-key", role="admin", door="ssh"))
    rc, _, err = run(ctx, f"service:{verb}", "--unit-dir", str(tmp_path / "u"), "--env-file", str(tmp_path / "e"))
    assert (rc, err) == (13, f"error: service:{verb} runs on the host only\n")
    assert not (tmp_path / "u").exists() and not (tmp_path / "e").exists()
