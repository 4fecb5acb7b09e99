"""Schema 3: service records move from the apps' tree (data/service-KIND/NAME, where an app named NAME took them
along) to DATA_DIR/services/KIND/NAME; the step is idempotent and resumes after a crash at any rename."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pushdock.errors import PushdockError
from pushdock.migrations import MIGRATIONS, SCHEMA_VERSION, ensure_current
from pushdock.state import State
from services import model


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under root with its mode and content."""
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def old_layout(root: Path) -> State:
    """A version-2 data dir as the code before schema 3 wrote it (State's property API, plugin `service-KIND`):
    postgres `db` and `shop`, redis `cache`, an app `shop` with settings, and the temp folder of a write that
    was interrupted."""
    state = State(root)
    state.create_root()
    state.set_schema_version(2)
    for kind, name in (("postgres", "db"), ("postgres", "shop"), ("redis", "cache")):
        state.set_secret_json(f"service-{kind}", name, "credentials", {"password": f"pw-{name}"})
        state.set_json(f"service-{kind}", name, "record", {"created": 1.5, "links": [{"app": "web",
                                                                                       "var": "DATABASE_URL"}]})
    state.set_json("service-postgres", "db", "backups", [{"file": "db.dump", "size": 3}])
    (root / "data" / "service-postgres" / ".db.x1y2").mkdir()  # a clone's temp copy, never renamed into place
    state.create_app("shop")
    state.set_env("shop", {"A": "1"})
    return state


def moved(state: State) -> None:
    for kind, name in (("postgres", "db"), ("postgres", "shop"), ("redis", "cache")):
        service = model.get(state, kind, name)
        assert service.links == (model.Link("web", "DATABASE_URL"),) and service.created == 1.5
        assert model.password(state, service) == f"pw-{name}"
        creds = state.path("services", kind, name, "credentials")
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert model.records(state, "postgres").get_json("db", "backups") == [{"file": "db.dump", "size": 3}]
    assert stat.S_IMODE(state.path("services").stat().st_mode) == 0o700
    assert not [p.name for p in state.path("data").iterdir() if p.name.startswith("service-")]
    assert state.get_env("shop") == {"A": "1"}  # the app's own properties stay


def test_old_records_are_moved_and_read_by_the_services_code(tmp_path: Path) -> None:
    state = old_layout(tmp_path)
    ensure_current(state)
    assert state.schema_version() == SCHEMA_VERSION == 3
    moved(state)
    assert [e["version"] for e in state.read_events() if e["action"] == "data:migrate"] == [3]
    state.destroy_app("shop")  # what the migration is for
    assert model.find(state, "postgres", "shop") is not None


def test_running_the_step_again_changes_nothing(tmp_path: Path) -> None:
    state = old_layout(tmp_path)
    ensure_current(state)
    before = tree(tmp_path)
    assert state.move_legacy_service_records() == []
    MIGRATIONS[2].step(state)
    assert tree(tmp_path) == before


def test_a_data_dir_without_services_is_left_alone(tmp_path: Path) -> None:
    state = State(tmp_path)
    state.create_root()
    state.set_schema_version(2)
    state.create_app("web")
    ensure_current(state)
    assert state.schema_version() == SCHEMA_VERSION and not state.path("services").exists()


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_a_crash_at_any_rename_resumes_to_the_same_result(tmp_path: Path, monkeypatch, crash_at: int) -> None:
    """os.rename fails at its Nth call (a crash there: the renames before it are done, the rest not); the version
    stays 2, and the next open finishes the move."""
    state = old_layout(tmp_path)
    real, calls = os.rename, []

    def crashing(src, dst, *a, **kw):
        calls.append(src)
        if len(calls) == crash_at:
            raise OSError(5, "Input/output error")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", crashing)
    with pytest.raises(PushdockError, match="schema version 3"):
        ensure_current(state)
    monkeypatch.setattr(os, "rename", real)
    assert state.schema_version() == 2
    ensure_current(state)
    assert state.schema_version() == 3
    moved(state)


def test_a_record_half_moved_file_by_file_is_completed(tmp_path: Path) -> None:
    """Both folders exist (a crash while merging): the files not yet in the target move, nothing is overwritten."""
    state = old_layout(tmp_path)
    target = tmp_path / "services" / "postgres" / "db"
    target.mkdir(parents=True)
    os.rename(tmp_path / "data" / "service-postgres" / "db" / "credentials", target / "credentials")
    ensure_current(state)
    moved(state)
