"""State store: name validation, atomic writes, properties, releases, locks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pushdock.errors import Conflict, NotFound, UsageError
from pushdock.state import Release, State, atomic_write, validate_app_name, validate_env_key


@pytest.mark.parametrize("name", ["../x", "A B", "a" * 64, "", "-a", "a-", "a_b", "a.b", "Ab", "a/b"])
def test_invalid_app_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid app name"):
        validate_app_name(name)


@pytest.mark.parametrize("name", ["a", "hello", "my-app-2", "a" * 63, "0app"])
def test_valid_app_names(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize("key", ["1X", "A-B", "", "A B", "A=B"])
def test_invalid_env_keys(key: str) -> None:
    with pytest.raises(UsageError):
        validate_env_key(key)


def test_atomic_write_leaves_no_temp_files(tmp_path) -> None:
    target = tmp_path / "d" / "f"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f"]


def test_app_lifecycle(tmp_path) -> None:
    st = State(tmp_path)
    st.create_app("web")
    assert st.list_apps() == ["web"]
    with pytest.raises(Conflict):
        st.create_app("web")
    st.set("config", "web", "x", "1")
    st.rename_app("web", "site")
    assert st.list_apps() == ["site"]
    assert st.get("config", "site", "x") == "1"
    st.destroy_app("site")
    assert st.list_apps() == []
    with pytest.raises(NotFound):
        st.require_app("site")


def test_releases_promote_and_supersede(tmp_path) -> None:
    st = State(tmp_path)
    st.create_app("web")
    r1 = Release(app="web", number=1, image="i:1", env={}, processes={"web": ""}, formation={"web": 1})
    st.save_release(r1)
    st.promote_release(r1)
    r2 = r1.with_(number=st.next_release_number("web"))
    assert r2.number == 2
    st.promote_release(r2)
    assert st.current_release("web").number == 2
    assert [r.status for r in st.list_releases("web")] == ["superseded", "current"]


def test_app_lock_serializes_and_times_out(tmp_path) -> None:
    st = State(tmp_path)
    st.create_app("web")
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with st.app_lock("web"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    waited = []
    with pytest.raises(Conflict, match="busy"):
        with st.app_lock("web", timeout=0.3, on_wait=lambda: waited.append(1)):
            pass
    assert waited == [1]
    release.set()
    t.join()
    start = time.monotonic()
    with st.app_lock("web", timeout=1):
        pass
    assert time.monotonic() - start < 1


def test_events_rotate_and_read_back_across_files(tmp_path, monkeypatch) -> None:
    from pushdock import state as state_mod

    monkeypatch.setattr(state_mod, "EVENTS_MAX_BYTES", 4096)
    s = State(tmp_path)
    for i in range(400):
        s.append_event({"action": "x", "i": i, "pad": "p" * 100})
    logs = sorted(p.name for p in tmp_path.glob("events.log*"))
    assert logs == ["events.log", "events.log.1", "events.log.2", "events.log.3", "events.log.4"]
    assert all(p.stat().st_size <= 4096 + 100 for p in tmp_path.glob("events.log*"))
    assert [e["i"] for e in s.read_events(5)] == [395, 396, 397, 398, 399]
    got = [e["i"] for e in s.read_events(100)]
    assert got == list(range(300, 400))  # spans the current file and rotated ones, in order
    assert len(s.read_events(10_000)) < 400  # the oldest file was dropped


def test_read_events_skips_a_torn_line(tmp_path) -> None:
    s = State(tmp_path)
    s.append_event({"action": "a"})
    with open(tmp_path / "events.log", "ab") as f:
        f.write(b'{"action": "torn\n')
    s.append_event({"action": "b"})
    assert [e["action"] for e in s.read_events(10)] == ["a", "b"]


def test_build_dirs_of_dead_processes_are_cleaned_and_running_ones_kept(tmp_path) -> None:
    import subprocess

    state = State(tmp_path)
    mine = state.make_build_dir("app", "src")
    assert mine.parent == tmp_path / "builds" and oct(mine.stat().st_mode & 0o777) == "0o700"
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / "builds" / f"app.{dead.pid}.src.x1y2"  # a build killed with its process
    orphan.mkdir()
    (orphan / "file").write_text("left behind")
    zombie = subprocess.Popen(["true"])  # exited, not reaped yet: as a killed worker whose parent died too
    deadline = time.monotonic() + 10  # until it has exited (state Z), as `true` does at once
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "`true` did not exit"
        time.sleep(0.01)
    unreaped = tmp_path / "builds" / f"app.{zombie.pid}.env.a1b2"
    unreaped.mkdir()
    try:
        assert sorted(state.clean_build_dirs()) == sorted([orphan.name, unreaped.name])
    finally:
        zombie.wait()
    assert mine.is_dir() and not orphan.exists() and not unreaped.exists()


def test_clone_app_copies_repo_and_settings_but_skipped_ones(tmp_path) -> None:
    s = State(tmp_path)
    s.create_app("old")
    s.set_env("old", {"SECRET": "x"})
    s.set_json("domains", "old", "list", ["old.example.com"])
    s.set("git", "old", "deploy-branch", "trunk")
    s.clone_app("old", "new", skip=frozenset({"domains"}))
    assert s.app_exists("new") and s.get_env("new") == {"SECRET": "x"} and s.get("git", "new", "deploy-branch") == "trunk"
    assert s.get_json("domains", "new", "list") is None
    assert oct(s._prop_path("config", "new", "env").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(Conflict):
        s.clone_app("old", "new", skip=frozenset())


def test_a_failed_clone_leaves_nothing_behind(tmp_path) -> None:
    s = State(tmp_path)
    s.create_app("old")
    s.set_env("old", {"A": "1"})
    s.set("git", "third", "deploy-branch", "main")  # leftover settings of an app that was never created
    s.set("git", "old", "deploy-branch", "main")
    with pytest.raises(Conflict, match="leftover settings"):
        s.clone_app("old", "third", skip=frozenset())
    assert not s.app_exists("third") and s.get_env("third") == {}
    assert [p.name for p in s.repos_dir.iterdir()] == ["old.git"]
