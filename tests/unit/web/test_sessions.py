"""Dashboard sessions kept as files (web/auth.py): a second `Sessions` on the same directory (serve after a
restart) knows a session the first made; expired and unreadable files go; without a directory nothing is written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pushdock.state import Identity
from web.auth import Sessions

WHO = Identity(name="ops", role="admin", door="http")


def test_a_session_is_known_to_the_next_process_until_it_is_closed(tmp_path: Path) -> None:
    store = tmp_path / "sessions"
    sid, made = Sessions(store).open(WHO, "digest-1")
    [name] = os.listdir(store)
    assert sid not in name and sid not in (store / name).read_text()
    again = Sessions(store).get(sid)
    assert again is not None
    assert (again.digest, again.csrf, again.expires, again.identity.name) == (made.digest, made.csrf, made.expires, "ops")
    assert again.identity.role == "deployer"  # a placeholder: the dashboard sets the token's current identity
    assert Sessions(store).get("another id") is None
    Sessions(store).close(sid)
    assert os.listdir(store) == [] and Sessions(store).get(sid) is None


def test_expired_and_unreadable_files_are_removed(tmp_path: Path) -> None:
    store = tmp_path / "sessions"
    first = Sessions(store)
    old, _ = first.open(WHO, "digest-old")
    live, _ = first.open(WHO, "digest-live")
    by_digest = {json.loads(p.read_text())["digest"]: p for p in store.iterdir()}
    record = json.loads(by_digest["digest-old"].read_text())
    by_digest["digest-old"].write_text(json.dumps(record | {"expires": time.time() - 1}))
    (store / ("0" * 64)).write_text("{not json")
    later = Sessions(store)  # a restart: expired and unreadable files go
    assert sorted(store.iterdir()) == [by_digest["digest-live"]]
    assert later.get(old) is None and later.get(live) is not None


def test_a_session_read_after_its_expiry_is_refused_and_its_file_removed(tmp_path: Path) -> None:
    store = tmp_path / "sessions"
    sid, _ = Sessions(store).open(WHO, "digest")
    running = Sessions(store)  # started while the session was valid
    [path] = store.iterdir()
    path.write_text(json.dumps(json.loads(path.read_text()) | {"expires": time.time() - 1}))
    assert running.get(sid) is None and not path.exists()


def test_without_a_directory_sessions_live_in_memory_only(tmp_path: Path) -> None:
    sessions = Sessions(None)
    sid, _ = sessions.open(WHO, "digest")
    assert sessions.get(sid) is not None and Sessions(None).get(sid) is None
    assert list(tmp_path.iterdir()) == []
