"""Storage mounts: persistent directories bound into every container of an app (`storage:*`).

A mount is `SOURCE:CONTAINER_PATH[:ro]`. SOURCE is the name of a storage directory (`storage:ensure-directory
NAME` makes DATA_DIR/storage/NAME, owned so that the app's user can write it) or, for admins only, an absolute
host path that exists. An app's mounts are one property (`storage/APP/mounts`, a JSON list of specs); each
release records the mounts it runs with (`Release.mounts`), so its processes, one-off `run` containers and
release-phase tasks, on any scheduler, get the same binds, and a serve restart reconciles with them. A change
is a new release (hooks.pipeline.new_release); a rollback keeps the app's mounts (data is not versioned with the
code, as on Dokku and Heroku).

What a kind of source binds is decided in one place, `Mount.engine_source`: a directory's path under the data
dir, or the host path itself. A service's Docker volume (postgres, redis) would be a third kind there, with the
same spec, validation and release plumbing.

Each storage directory remembers the apps that ever mounted it (`storage/--global/directories`): a deployer may
mount a directory only if all of them are its own apps, so no deployer reads another app's data through one.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Release, State

PLUGIN, PROPERTY, DIRECTORIES = "storage", "mounts", "directories"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
MAX_SPEC = 1024
MAX_MOUNTS = 50
# Container paths that may not be mounted over: these trees (and anything in them) belong to the kernel,
# the engine (/etc/hosts, /etc/resolv.conf) and the OS...
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc")
# ...and these directories themselves would hide the app's code (/app) or its runtime (subpaths are fine).
HIDDEN = frozenset({"/", "/app", "/bin", "/boot", "/lib", "/lib64", "/sbin", "/usr", "/var"})
# `--chown` of ensure-directory: who the app runs as. herokuish: the stack image's `herokuishuser`, which
# buildpack apps run as; a Dockerfile app runs as its image's USER (give its UID[:GID]).
CHOWN = {"herokuish": (32767, 32767), "root": (0, 0), "false": None}
CHOWN_IDS = re.compile(r"^([0-9]{1,10})(?::([0-9]{1,10}))?\Z")
MAX_ID = 2**31 - 1
SYNTAX = "expected SOURCE:CONTAINER_PATH (or SOURCE:CONTAINER_PATH:ro), SOURCE a storage directory name or an " \
         "absolute host path"


@dataclass(frozen=True)
class Mount:
    source: str  # a storage directory name, or an absolute host path
    target: str  # absolute path inside the container
    read_only: bool = False

    @property
    def kind(self) -> str:
        return "host" if self.source.startswith("/") else "directory"

    @property
    def spec(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")

    def engine_source(self, state: State) -> str:
        """The host path the engine binds (a directory's path under DATA_DIR/storage)."""
        return str(state.storage_dir(self.source)) if self.kind == "directory" else self.source

    def to_dict(self, state: State) -> dict[str, Any]:
        """Dokku's `storage:list --format json` keys, plus the source as given and its kind."""
        return {"host_path": self.engine_source(state), "container_path": self.target,
                "volume_options": "ro" if self.read_only else "", "source": self.source, "kind": self.kind}


# -- parsing ---------------------------------------------------------------------------------------------
def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _absolute(path: str, what: str) -> str:
    """An absolute path in its plain form ('//' and a trailing '/' dropped); UsageError for '.' or '..'."""
    if not path.startswith("/"):
        raise UsageError(f"{what} {_shown(path)} must be an absolute path")
    parts = path.split("/")
    if any(p in (".", "..") for p in parts):
        raise UsageError(f"{what} {_shown(path)} must not contain '.' or '..'")
    return "/" + "/".join(p for p in parts if p)


def check_name(name: str) -> str:
    if not NAME.match(name) or ".." in name:
        raise UsageError(f"invalid storage directory name {_shown(name)}: use 1-64 letters, digits, '.', '-' and "
                         "'_', starting with a letter or digit")
    return name


def check_target(target: str) -> str:
    clean = _absolute(target, "container path")
    if clean in HIDDEN:
        raise UsageError(f"container path {clean} may not be mounted over (it would hide the "
                         f"{'app' if clean == '/app' else 'system'}'s files); use a path below it")
    for tree in SYSTEM_TREES:
        if clean == tree or clean.startswith(tree + "/"):
            raise UsageError(f"container path {clean} is inside {tree}, which belongs to the system")
    return clean


def parse(spec: str) -> Mount:
    """`SOURCE:CONTAINER_PATH[:ro|:rw]` -> Mount; UsageError (one line) for anything else."""
    if not isinstance(spec, str) or not spec or len(spec) > MAX_SPEC or any(ord(c) < 32 or c == "\x7f" for c in spec):
        raise UsageError(f"{SYNTAX} (got {_shown(str(spec))})")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")) or not all(parts[:2]):
        raise UsageError(f"{SYNTAX} (got {_shown(spec)})")
    source, target = parts[0], check_target(parts[1])
    if source.startswith("/"):
        source = _absolute(source, "host path")
    elif not NAME.match(source) or ".." in source:
        raise UsageError(f"source {_shown(source)} must be a storage directory name (storage:ensure-directory) or "
                         "an absolute host path; relative paths are not accepted")
    return Mount(source, target, read_only=len(parts) == 3 and parts[2] == "ro")


def canonical(state: State, mount: Mount) -> Mount:
    """A host path that is a storage directory (DATA_DIR/storage/NAME, as Dokku's docs write it) is that NAME."""
    if mount.kind == "host":
        path = Path(mount.source)
        if path.parent == state.storage_root and NAME.match(path.name) and ".." not in path.name:
            return Mount(path.name, mount.target, mount.read_only)
    return mount


def parse_input(state: State, spec: str) -> Mount:
    return canonical(state, parse(spec))


# -- an app's mounts ---------------------------------------------------------------------------------------
def stored(state: State, app: str) -> list[Mount]:
    """The app's mounts as stored (an unreadable entry is logged and left out: deploys must go on)."""
    out = []
    for spec in state.get_json(PLUGIN, app, PROPERTY, []) or []:
        try:
            out.append(parse(spec))
        except UsageError:
            logger.warning("unreadable storage mount left out", app=app, spec=str(spec)[:80])
    return out


def specs(mounts: list[Mount]) -> list[str]:
    return [m.spec for m in mounts]


def store(state: State, app: str, mounts: list[Mount] | list[str]) -> None:
    values = [m if isinstance(m, str) else m.spec for m in mounts]
    if values:
        state.set_json(PLUGIN, app, PROPERTY, values)
    else:
        state.delete(PLUGIN, app, PROPERTY)


def added(mounts: list[Mount], mount: Mount) -> list[Mount]:
    """`mounts` plus `mount`; Conflict if it (or anything at its container path) is there already."""
    for m in mounts:
        if (m.source, m.target) == (mount.source, mount.target):
            raise Conflict(f"{mount.source}:{mount.target} is mounted already")
        if m.target == mount.target:
            raise Conflict(f"{mount.target} is already the mount point of {m.source} (storage:unmount it first)")
    if len(mounts) >= MAX_MOUNTS:
        raise UsageError(f"at most {MAX_MOUNTS} mounts per app")
    return [*mounts, mount]


def removed(app: str, mounts: list[Mount], mount: Mount) -> list[Mount]:
    """`mounts` without `mount` (its :ro/:rw part does not matter); NotFound if it is not there."""
    kept = [m for m in mounts if (m.source, m.target) != (mount.source, mount.target)]
    if len(kept) == len(mounts):
        raise NotFound(f"{app} has no mount {mount.source}:{mount.target} (storage:list {app} shows its mounts)")
    return kept


def check_list(mounts: list[Mount]) -> None:
    """No container path twice (the engine refuses duplicate mount points)."""
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise UsageError(f"{m.target} is mounted twice")
        seen.add(m.target)
    if len(mounts) > MAX_MOUNTS:
        raise UsageError(f"at most {MAX_MOUNTS} mounts per app")


def check_change(ctx: Context, app: str, old: list[Mount], new: list[Mount]) -> None:
    """Sources exist; host paths are an admin's to add or remove; a deployer mounts only its own apps' data."""
    check_list(new)
    who, state = ctx.identity, ctx.state
    before = {(m.source, m.target) for m in old}
    after = {(m.source, m.target) for m in new}
    for m in [m for m in new if (m.source, m.target) not in before] + [m for m in old if (m.source, m.target)
                                                                           not in after]:
        if m.kind == "host" and who.role != "admin":
            raise Forbidden(f"{who.name} ({who.role}) may not mount host paths: admin only (mount a storage "
                            "directory instead)")
    for m in new:
        if (m.source, m.target) in before:
            continue
        if m.kind == "host":
            if not os.path.exists(m.source):
                raise NotFound(f"host path {m.source} does not exist (pushdock never creates host paths)")
            continue
        if not directory_exists(state, m.source):
            raise NotFound(f"no storage directory {m.source}: create it with storage:ensure-directory {m.source}")
        if who.role != "admin":
            others = sorted(a for a in users(state, m.source) if a != app and not who.may_use(a))
            if others:
                raise Forbidden(f"storage directory {m.source} holds data of an app {who.name} has no access to")


# -- storage directories -----------------------------------------------------------------------------------
def parse_chown(value: str) -> tuple[int, int] | None:
    """`herokuish` (default), `root`, `false` (leave as is) or `UID[:GID]` -> (uid, gid) or None."""
    if value in CHOWN:
        return CHOWN[value]
    m = CHOWN_IDS.match(value)
    if not m or int(m.group(1)) > MAX_ID or int(m.group(2) or 0) > MAX_ID:
        raise UsageError(f"--chown must be herokuish, root, false or UID[:GID] (got {_shown(value)})")
    uid = int(m.group(1))
    return uid, int(m.group(2)) if m.group(2) is not None else uid


def directory_exists(state: State, name: str) -> bool:
    path = state.storage_dir(name)
    return path.is_dir() and not path.is_symlink()


def ensure_directory(state: State, name: str, owner: tuple[int, int] | None) -> Path:
    """Create DATA_DIR/storage/NAME if missing and give it to `owner` (None: leave the owner as it is)."""
    path = state.storage_dir(check_name(name))
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise Conflict(f"{path} exists and is not a directory")
    state.storage_root.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o755, exist_ok=True)
    if owner is not None:
        try:
            os.chown(path, *owner)
        except OSError as e:
            raise PushdockError(f"cannot give {path} to {owner[0]}:{owner[1]} ({e.strerror}); "
                                "use --chown false") from None
    with state.global_lock(PLUGIN):
        known = _directories(state)
        entry = known.setdefault(name, {"created": time.time(), "apps": []})
        entry["owner"] = "" if owner is None else f"{owner[0]}:{owner[1]}"
        state.set_json(PLUGIN, GLOBAL, DIRECTORIES, known)
    return path


def _directories(state: State) -> dict[str, Any]:
    raw = state.get_json(PLUGIN, GLOBAL, DIRECTORIES, {})
    return raw if isinstance(raw, dict) else {}


def users(state: State, name: str) -> set[str]:
    """Apps that mount directory `name` now or ever did."""
    entry = _directories(state).get(name, {})
    ever = set(entry.get("apps", [])) if isinstance(entry, dict) else set()
    now = {app for app in state.list_apps() if any(m.source == name for m in stored(state, app))}
    return ever | now


def remember_users(state: State, app: str, mounts: list[Mount]) -> None:
    """Record `app` as a user of the directories it mounts (the deployer rule of check_change)."""
    names = {m.source for m in mounts if m.kind == "directory"}
    if not names:
        return
    with state.global_lock(PLUGIN):
        known = _directories(state)
        for name in names:
            entry = known.setdefault(name, {"created": time.time(), "apps": [], "owner": ""})
            entry["apps"] = sorted({*entry.get("apps", []), app})
        state.set_json(PLUGIN, GLOBAL, DIRECTORIES, known)


def renamed(state: State, old: str, new: str) -> None:
    """`apps:rename`: the directories' users follow the app's new name."""
    with state.global_lock(PLUGIN):
        known = _directories(state)
        for entry in known.values():
            if old in entry.get("apps", []):
                entry["apps"] = sorted({*entry["apps"], new} - {old})
        if known:
            state.set_json(PLUGIN, GLOBAL, DIRECTORIES, known)


# -- what the engine takes ---------------------------------------------------------------------------------
def of_release(state: State, release: Release) -> list[Mount]:
    """The release's mounts; a storage directory that vanished is an error, not an empty root-owned one."""
    out = []
    for spec in release.mounts:
        m = parse(spec)
        if m.kind == "directory" and not directory_exists(state, m.source):
            raise PushdockError(f"storage directory {m.source} is gone: recreate it with "
                                f"storage:ensure-directory {m.source}")
        out.append(m)
    return out


def binds(state: State, release: Release) -> dict[str, Any]:
    """Keyword arguments of docker's create_host_config: the release's mounts as binds."""
    mounts = of_release(state, release)
    if not mounts:
        return {}
    return {"binds": [f"{m.engine_source(state)}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in mounts]}


def swarm_mounts(state: State, release: Release) -> list[Any] | None:
    """docker.types.Mount bind mounts of a task template (the source must exist on the task's node)."""
    mounts = of_release(state, release)
    if not mounts:
        return None
    from docker.types import Mount as EngineMount  # noqa: PLC0415 -- start-up: docker loads when first used

    return [EngineMount(m.target, m.engine_source(state), type="bind", read_only=m.read_only) for m in mounts]


def describe(mounts: list[Mount] | list[str]) -> str:
    return " ".join(m if isinstance(m, str) else m.spec for m in mounts) or "none"


def dumps(state: State, mounts: list[Mount]) -> str:
    return json.dumps([m.to_dict(state) for m in mounts], indent=1)
