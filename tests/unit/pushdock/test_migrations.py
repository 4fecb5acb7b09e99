"""The data dir's schema version: migrations run in order, each recorded only once it succeeded, under a lock;
a newer data dir is refused untouched. (The real upgrade from the last unversioned release is in
tests/integration/test_upgrade.py.)"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest

from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.migrations import MIGRATIONS, SCHEMA_VERSION, Migration, ensure_current, migrate
from pushdock.settings import Settings
from pushdock.state import State


def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under root: (mode, mtime_ns, content) — what 'touching nothing' means."""
    out = {".": (root.stat().st_mode, root.stat().st_mtime_ns, b"")}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


def test_table_is_ordered_and_complete() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version


@pytest.mark.parametrize("exists", [False, True])
def test_a_new_data_dir_is_made_private_and_current_without_steps(tmp_path: Path, exists: bool) -> None:
    state = State(tmp_path / "new")
    if exists:
        state.root.mkdir(mode=0o755)
    ensure_current(state)
    assert state.schema_version() == SCHEMA_VERSION
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o711
    assert state.read_events() == []


def test_an_old_data_dir_is_migrated_and_each_step_is_an_event(tmp_path: Path) -> None:
    state = State(tmp_path)
    (tmp_path / "repos").mkdir(mode=0o755)
    (tmp_path / "nginx").mkdir(mode=0o755)
    (tmp_path / "events.log").write_text("")
    os.chmod(tmp_path / "events.log", 0o644)
    os.chmod(tmp_path, 0o755)
    ensure_current(state)
    assert state.schema_version() == SCHEMA_VERSION
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o711  # not listable; nginx's workers still traverse it
    assert stat.S_IMODE((tmp_path / "repos").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "events.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "nginx").stat().st_mode) == 0o755
    steps = [e for e in state.read_events() if e["action"] == "data:migrate"]
    assert [e["version"] for e in steps] == [m.version for m in MIGRATIONS]


def test_each_step_is_idempotent(tmp_path: Path) -> None:
    state = State(tmp_path)
    (tmp_path / "repos").mkdir()
    ensure_current(state)
    before = tree(tmp_path)
    for m in MIGRATIONS:
        m.step(state)
    assert tree(tmp_path) == before


def test_a_current_data_dir_is_only_read(tmp_path: Path) -> None:
    state = State(tmp_path)
    ensure_current(state)
    before = tree(tmp_path)
    ensure_current(state)
    assert tree(tmp_path) == before


def test_the_version_is_written_only_after_its_step_succeeded(tmp_path: Path) -> None:
    state = State(tmp_path)
    (tmp_path / "repos").mkdir()
    ran: list[int] = []

    def ok(n: int):
        return lambda s: ran.append(n)

    def boom(s: State) -> None:
        raise OSError(28, "No space left on device")

    broken = (Migration(1, "one", ok(1)), Migration(2, "two", boom), Migration(3, "three", ok(3)))
    with pytest.raises(PushdockError, match=r"to schema version 2 \(two\) failed: \[Errno 28\] No space left"):
        migrate(state, broken)
    assert state.schema_version() == 1 and ran == [1]
    fixed = (Migration(1, "one", ok(1)), Migration(2, "two", ok(2)), Migration(3, "three", ok(3)))
    assert [m.version for m in migrate(state, fixed)] == [2, 3]
    assert state.schema_version() == 3 and ran == [1, 2, 3]  # resumed at the step that failed


def test_migrations_run_under_a_lock_and_once(tmp_path: Path) -> None:
    """A second process waiting for the lock finds the work done and runs no step again."""
    state = State(tmp_path)
    (tmp_path / "repos").mkdir()
    ran: list[str] = []
    started = threading.Event()

    def slow(s: State) -> None:
        started.set()
        time.sleep(0.5)
        ran.append("slow")

    table = (Migration(1, "slow", slow),)
    first = threading.Thread(target=migrate, args=(state, table))
    first.start()
    assert started.wait(5)
    assert migrate(State(tmp_path), table) == []  # waited for the lock, then found version 1
    first.join()
    assert ran == ["slow"] and state.schema_version() == 1


def test_a_newer_data_dir_is_refused_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "repos").mkdir(parents=True)
    os.chmod(data, 0o755)
    (data / "VERSION").write_text(f"{SCHEMA_VERSION + 1}\n")
    before = tree(data)
    with pytest.raises(PushdockError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this pushdock knows"):
        ensure_current(State(data))
    ctx = Context(settings=Settings(data_dir=data))
    out, err = io.StringIO(), io.StringIO()
    assert dispatch(["apps:list"], ctx, out, err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the data dir"), lines
    assert tree(data) == before


def test_a_garbled_version_file_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "VERSION").write_text("two\n")
    with pytest.raises(PushdockError, match="does not hold a schema version"):
        ensure_current(State(tmp_path))
    assert (tmp_path / "VERSION").read_text() == "two\n"


def test_every_entry_point_opens_the_data_dir_through_context_state(tmp_path: Path) -> None:
    """Context.state is the one door: the CLI, SSH workers, webhook workers and HTTP requests all build a
    Context and reach the data dir through it (no other `State(` outside pushdock/context.py)."""
    root = Path(__file__).resolve().parents[3]
    offenders = []
    for pkg in ("pushdock", "gitserver", "hooks", "builders", "schedulers", "proxies"):
        for path in (root / pkg).rglob("*.py"):
            if path.name not in ("context.py", "state.py") and re.search(r"\bState\(", path.read_text()):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
    assert Context(settings=Settings(data_dir=tmp_path / "d")).state.schema_version() == SCHEMA_VERSION


def test_nginx_workers_stay_unprivileged_under_a_private_data_dir() -> None:
    """A 0700 data dir would make nginx's workers run as root (they could not reach prefix/temp): 0711 keeps
    them on nginx's default unprivileged user. Made outside pytest's 0700 temp root, which would hide it."""
    import shutil
    import tempfile

    from proxies.nginx.proxy import _layout, _worker_user

    base = Path(tempfile.mkdtemp(prefix="pushdock-perm-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        state = State(base / "data")
        ensure_current(state)
        lay = _layout(state.path("nginx").absolute())
        state.make_private()
        assert _worker_user(lay.prefix) is None
    finally:
        shutil.rmtree(base)
