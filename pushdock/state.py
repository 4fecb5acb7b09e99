"""All state under DATA_DIR: apps, properties, releases, keys, events, locks, service records.

Only this module builds paths under the data dir. Writes are temp file -> fsync -> os.replace.

Two trees of named properties, never mixed: `data/PLUGIN/APP/PROP` holds what belongs to an app (or to every
app: the `--global` key, which is no app name), and is what destroy/rename/clone of an app take by globbing
`data/*/APP`; `services/KIND/NAME/PROP` (`Records`) holds what belongs to something else that is named like an
app (a service's record and credentials), so an app of the same name never reaches it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pushdock.errors import Conflict, NotFound, PushdockError, UsageError

APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,29}\Z")
GLOBAL = "--global"
EVENTS_MAX_BYTES = 16 << 20  # events.log is rotated past this size...
EVENTS_KEEP = 4  # ...into events.log.1 (newest) .. events.log.4 (oldest, dropped at the next rotation)


def validate_app_name(name: str) -> str:
    """Return `name` if it is a lowercase DNS label of 1-63 chars, else raise UsageError."""
    if not isinstance(name, str) or not APP_NAME.match(name):
        shown = name if len(name) <= 70 else name[:67] + "..."
        raise UsageError(
            f"invalid app name {shown!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_env_key(key: str) -> str:
    if not ENV_KEY.match(key):
        raise UsageError(f"invalid config key {key!r}: use letters, digits and '_', not starting with a digit")
    return key


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644, *, tmp_dir: Path | None = None,
                 durable: bool = True) -> None:
    """Write `data` to `path` so readers see the old or the new content, never a mix. `tmp_dir` (same file
    system) keeps the temp file out of a folder someone watches. `durable=False` skips the fsync: only for
    files that mean nothing after a crash (a message between live processes)."""
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=tmp_dir or path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.errno == errno.ENOSPC:
            raise PushdockError(f"no space left on the data disk writing {path.name}") from e
        raise


# The data dir: pushdock's (as its owner) to read and list; others may only traverse it, because nginx's workers
# drop to an unprivileged user and must reach their temp dir under DATA_DIR/nginx (0700 would force them to run
# as root). Secrets under it are 0600 file by file.
PRIVATE_ROOT_MODE = 0o711
# What make_private leaves as it is: nginx's prefix (its workers reach prefix/temp; its certs/ is 0700 itself)
# and the ACME HTTP-01 webroots (public answers, which nginx's workers read).
TRAVERSED = frozenset({"nginx", "acme-challenge"})


@dataclass(frozen=True)
class Release:
    """A numbered, immutable snapshot: what ran (image), with what (env), how many (formation)."""

    app: str
    number: int
    image: str
    env: dict[str, str]
    processes: dict[str, str]
    formation: dict[str, int]
    sha: str = ""
    who: str = ""
    why: str = ""
    created: float = field(default_factory=time.time)
    status: str = "pending"  # pending | current | superseded | failed
    web_port: int = 5000
    # app.json of the deployed tree: `scripts.dokku` (predeploy, postdeploy) and `healthchecks`
    # (normalized by pushdock.checks), kept per release so a rollback runs the scripts of the code it runs.
    scripts: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # app.json's `formation` gave quantities: the counts are the code's, `ps:scale` is refused (Dokku's rule).
    formation_fixed: bool = False
    # tcp ports the image EXPOSEs (Dockerfile builds): the proxy's default `http:P:P` mappings (proxies/ports.py).
    exposed: list[int] = field(default_factory=list)
    # app.json `cron`: [{"command": ..., "schedule": ...}] (validated by hooks.appjson); what serve runs.
    cron: list[dict[str, Any]] = field(default_factory=list)
    # The image was removed by pruning (releases keep the last N images): rollback cannot reach it.
    pruned: bool = False
    # Storage mounts every container of the release gets (`SOURCE:CONTAINER_PATH[:ro]`, pushdock/storage.py).
    mounts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"v{self.number}"

    def with_(self, **changes: Any) -> Release:
        data = asdict(self) | changes
        return Release(**data)


@dataclass(frozen=True)
class SshKey:
    name: str
    key: str  # "ssh-ed25519 AAAA..." (type and base64 only)
    fingerprint: str
    role: str = "admin"
    apps: tuple[str, ...] = ()
    added: float = field(default_factory=time.time)


ROLES = ("admin", "deployer")  # what an SSH key or a token may be: admin (everything), deployer (its apps)


@dataclass(frozen=True)
class Identity:
    """Who is calling, through which door."""

    name: str
    role: str = "admin"
    apps: tuple[str, ...] = ()
    door: str = "cli"

    def may_use(self, app: str) -> bool:
        return self.role == "admin" or app in self.apps


SERVICES_DIR = "services"  # DATA_DIR/services/KIND/NAME/PROP: service records, outside data/*/APP
KIND = re.compile(r"^[a-z][a-z0-9-]{0,29}\Z")


def _check_prop(prop: str) -> str:
    if not prop or "/" in prop or prop in (".", "..") or prop.startswith(".") or "\0" in prop:
        raise UsageError(f"invalid property name {prop[:40]!r}")
    return prop


class Records:
    """The properties of things named like apps that are not apps (services): NAME/PROP files in a folder of
    their own (`State.service_records`), out of reach of what destroys, renames or clones an app."""

    def __init__(self, top: Path, root: Path) -> None:
        self._top = top  # DATA_DIR/services: made 0700 (the records are not listed by other users)
        self.root = root

    def _path(self, name: str, prop: str) -> Path:
        return self.root / validate_app_name(name) / _check_prop(prop)

    def _write(self, name: str, prop: str, data: str, mode: int) -> None:
        path = self._path(name, prop)
        self._top.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data, mode=mode)

    def get(self, name: str, prop: str, default: str | None = None) -> str | None:
        try:
            return self._path(name, prop).read_text()
        except FileNotFoundError:
            return default

    def set(self, name: str, prop: str, value: str) -> None:
        self._write(name, prop, value, 0o644)

    def delete(self, name: str, prop: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name, prop).unlink()

    def get_json(self, name: str, prop: str, default: Any = None) -> Any:
        raw = self.get(name, prop)
        return default if raw is None else json.loads(raw)

    def set_json(self, name: str, prop: str, value: Any, *, secret: bool = False) -> None:
        """`secret`: readable by the owner only (0600): credentials."""
        self._write(name, prop, json.dumps(value, indent=1, sort_keys=True), 0o600 if secret else 0o644)

    def names(self) -> list[str]:
        """The names that have properties here."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_dir() and APP_NAME.match(e.name))

    def forget(self, name: str) -> None:
        """Remove every property of `name` (a service that was destroyed)."""
        shutil.rmtree(self.root / validate_app_name(name), ignore_errors=True)


class State:
    """Typed access to everything pushdock keeps on disk."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)

    # -- layout -------------------------------------------------------------------------------
    @property
    def repos_dir(self) -> Path:
        return self.root / "repos"

    def repo_path(self, app: str) -> Path:
        return self.repos_dir / f"{validate_app_name(app)}.git"

    def path(self, *parts: str) -> Path:
        """A path for a component's own files (nginx config, keys, logs) under the data dir."""
        return self.root.joinpath(*parts)

    @property
    def storage_root(self) -> Path:
        """Where `storage:ensure-directory` makes directories (absolute: the engine binds it)."""
        return self.root.absolute() / "storage"

    def storage_dir(self, name: str) -> Path:
        """The directory of storage NAME (the caller validated the name: one path component)."""
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"invalid storage directory name {name[:40]!r}")
        return self.storage_root / name

    def service_records(self, kind: str) -> Records:
        """The records of services of `kind` (postgres, redis): DATA_DIR/services/KIND/NAME/PROP."""
        if not KIND.match(kind):
            raise UsageError(f"invalid service kind {kind[:40]!r}")
        return Records(self.root / SERVICES_DIR, self.root / SERVICES_DIR / kind)

    def move_legacy_service_records(self) -> list[str]:
        """Schema 3: move the service records of the old layout, `data/service-KIND/NAME`, where an app named
        NAME took them along (destroy, rename, clone), to `services/KIND/NAME`; the moved `KIND/NAME`s.

        Idempotent and crash-safe: each record moves by one rename (same file system); a record whose target
        exists already (a crash between moving its files) has its remaining files moved one by one, the folder
        left empty is removed. Running it again finds nothing left to move."""
        moved = []
        data = self.root / "data"
        try:
            folders = sorted(d for d in data.iterdir() if d.is_dir() and d.name.startswith("service-"))
        except FileNotFoundError:
            return []
        for folder in folders:
            kind = folder.name.removeprefix("service-")
            if not KIND.match(kind):
                continue
            target_root = self.root / SERVICES_DIR / kind
            for src in sorted(folder.iterdir()):
                if not src.is_dir() or not APP_NAME.match(src.name):
                    continue  # a temp folder of an interrupted write or clone: left for the removal below
                (self.root / SERVICES_DIR).mkdir(mode=0o700, exist_ok=True)
                os.chmod(self.root / SERVICES_DIR, 0o700)  # private, as data/ was (migration 2)
                target_root.mkdir(exist_ok=True)
                target = target_root / src.name
                if not target.exists():
                    os.rename(src, target)
                else:
                    for f in src.iterdir():
                        if not (target / f.name).exists():
                            os.rename(f, target / f.name)
                    shutil.rmtree(src)
                moved.append(f"{kind}/{src.name}")
            _fsync_dir(target_root)
            shutil.rmtree(folder)  # what is left: temp files of interrupted writes
        return moved

    def _prop_path(self, plugin: str, app: str, prop: str) -> Path:
        if app != GLOBAL:
            validate_app_name(app)
        return self.root / "data" / plugin / app / prop

    # -- properties -----------------------------------------------------------------------------
    def get(self, plugin: str, app: str, prop: str, default: str | None = None) -> str | None:
        try:
            return self._prop_path(plugin, app, prop).read_text()
        except FileNotFoundError:
            return default

    def set(self, plugin: str, app: str, prop: str, value: str) -> None:
        atomic_write(self._prop_path(plugin, app, prop), value)

    def delete(self, plugin: str, app: str, prop: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._prop_path(plugin, app, prop).unlink()

    def get_json(self, plugin: str, app: str, prop: str, default: Any = None) -> Any:
        raw = self.get(plugin, app, prop)
        return default if raw is None else json.loads(raw)

    def set_json(self, plugin: str, app: str, prop: str, value: Any) -> None:
        self.set(plugin, app, prop, json.dumps(value, indent=1, sort_keys=True))

    def set_secret_json(self, plugin: str, app: str, prop: str, value: Any) -> None:
        """As set_json, readable by the owner only (0600): credentials."""
        atomic_write(self._prop_path(plugin, app, prop), json.dumps(value, indent=1, sort_keys=True), mode=0o600)

    def names(self, plugin: str) -> list[str]:
        """The apps that have properties of `plugin` (not `--global`)."""
        root = self.root / "data" / plugin
        return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != GLOBAL) if root.is_dir() else []

    def forget(self, plugin: str, app: str) -> None:
        """Remove every property of `plugin` for `app`."""
        shutil.rmtree(self._prop_path(plugin, app, "x").parent, ignore_errors=True)

    # -- locks ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def app_lock(
        self, app: str, *, timeout: float = 600.0, on_wait: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Hold the app's flock (shared by pushes, webhooks and admin commands)."""
        path = self.root / "locks" / f"{validate_app_name(app)}.lock"
        with exclusive_flock(path, timeout=timeout, busy=f"app {app} is busy with another deploy", on_wait=on_wait):
            yield

    # -- apps -----------------------------------------------------------------------------------
    def app_exists(self, app: str) -> bool:
        return self.repo_path(app).is_dir()

    def require_app(self, app: str) -> str:
        if not self.app_exists(app):
            raise NotFound(f"app {app} does not exist")
        return app

    def list_apps(self) -> list[str]:
        try:
            names = os.listdir(self.repos_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-4] for n in names if n.endswith(".git") and APP_NAME.match(n[:-4]))

    def create_app(self, app: str) -> None:
        """Create the bare repo of a new app (Conflict if it exists)."""
        from dulwich.refs import Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
        from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

        path = self.repo_path(app)
        if path.exists():
            raise Conflict(f"app {app} already exists")
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{app}.", dir=self.repos_dir))
        try:
            repo = Repo.init_bare(str(tmp))
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
            repo.close()
            os.rename(tmp, path)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if path.exists():
                raise Conflict(f"app {app} already exists") from e
            raise
        self.set("apps", app, "created", str(time.time()))

    def destroy_app(self, app: str) -> None:
        """Remove every file of the app; the repo last, so a crash leaves a destroyable app."""
        for d in (self.root / "data").glob(f"*/{validate_app_name(app)}"):
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.root / "logs" / app, ignore_errors=True)
        path = self.repo_path(app)
        if path.exists():
            trash = self.repos_dir / f".trash-{app}-{os.getpid()}"
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / "locks" / f"{app}.lock").unlink()

    def rename_app(self, old: str, new: str) -> None:
        if self.app_exists(new):
            raise Conflict(f"app {new} already exists")
        self.require_app(old)
        for d in (self.root / "data").glob(f"*/{validate_app_name(old)}"):
            os.rename(d, d.parent / validate_app_name(new))
        logs = self.root / "logs" / old
        if logs.exists():
            os.rename(logs, self.root / "logs" / new)
        os.rename(self.repo_path(old), self.repo_path(new))
        for r in self.list_releases(new):
            self._write_release(r.with_(app=new))

    # -- env ------------------------------------------------------------------------------------
    def get_env(self, app: str) -> dict[str, str]:
        env = self.get_json("config", app, "env", {})
        return dict(env)

    def set_env(self, app: str, env: dict[str, str]) -> None:
        self.set_json("config", app, "env", env)
        os.chmod(self._prop_path("config", app, "env"), 0o600)

    # -- releases -------------------------------------------------------------------------------
    def _release_path(self, app: str, number: int) -> Path:
        return self._prop_path("releases", app, f"v{number}.json")

    def _write_release(self, r: Release) -> None:
        atomic_write(self._release_path(r.app, r.number), json.dumps(asdict(r), indent=1), mode=0o600)

    def list_releases(self, app: str) -> list[Release]:
        d = self._prop_path("releases", app, "x").parent
        out = []
        for p in d.glob("v*.json"):
            out.append(Release(**json.loads(p.read_text())))
        return sorted(out, key=lambda r: r.number)

    def get_release(self, app: str, number: int) -> Release:
        try:
            return Release(**json.loads(self._release_path(app, number).read_text()))
        except FileNotFoundError:
            raise NotFound(f"app {app} has no release v{number}") from None

    def current_release(self, app: str) -> Release | None:
        raw = self.get("releases", app, "current")
        return None if raw is None else self.get_release(app, int(raw))

    def next_release_number(self, app: str) -> int:
        releases = self.list_releases(app)
        return releases[-1].number + 1 if releases else 1

    def save_release(self, r: Release) -> None:
        """Record a release (any status); making it current is `promote_release`."""
        self._write_release(r)

    def promote_release(self, r: Release) -> Release:
        """Mark `r` as what runs now; the previous current one becomes superseded."""
        prev = self.current_release(r.app)
        current = r.with_(status="current")
        self._write_release(current)
        self.set("releases", r.app, "current", str(r.number))
        if prev is not None and prev.number != r.number:
            self._write_release(prev.with_(status="superseded"))
        return current

    # -- formation (desired scale) ----------------------------------------------------------------
    def get_formation(self, app: str) -> dict[str, int] | None:
        formation: dict[str, int] | None = self.get_json("ps", app, "formation")
        return formation

    def set_formation(self, app: str, formation: dict[str, int]) -> None:
        self.set_json("ps", app, "formation", formation)

    # -- ssh keys -------------------------------------------------------------------------------
    def _keys_path(self) -> Path:
        return self._prop_path("ssh-keys", GLOBAL, "keys.json")

    def list_keys(self) -> list[SshKey]:
        try:
            raw = json.loads(self._keys_path().read_text())
        except FileNotFoundError:
            return []
        return [SshKey(**{**k, "apps": tuple(k.get("apps", ()))}) for k in raw]

    def save_keys(self, keys: list[SshKey]) -> None:
        atomic_write(self._keys_path(), json.dumps([asdict(k) for k in keys], indent=1), mode=0o600)

    @contextlib.contextmanager
    def global_lock(self, name: str) -> Iterator[None]:
        path = self.root / "locks" / f"{GLOBAL}-{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def global_lock_held(self, name: str) -> bool:
        """Whether another process holds `global_lock(name)` now (taken and given back at once if not)."""
        path = self.root / "locks" / f"{GLOBAL}-{name}.lock"
        try:
            f = open(path)  # closed below; a lock nobody ever took has no file
        except FileNotFoundError:
            return False
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    # -- schema version (pushdock.migrations) -----------------------------------------------------
    def schema_version(self) -> int:
        """The data dir's schema version (DATA_DIR/VERSION); 0 when there is none: the layout before versions."""
        path = self.root / "VERSION"
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise PushdockError(f"cannot read {path}: {e.strerror}") from None
        if not raw.strip().isdigit():
            raise PushdockError(f"{path} does not hold a schema version: {raw.strip()[:20]!r}")
        return int(raw)

    def set_schema_version(self, version: int) -> None:
        atomic_write(self.root / "VERSION", f"{version}\n", mode=0o600)

    def is_empty(self) -> bool:
        """True if the data dir does not exist or holds nothing yet."""
        try:
            return not any(os.scandir(self.root))
        except FileNotFoundError:
            return True

    def create_root(self) -> None:
        """Make the data dir (0711) if it does not exist; an existing one is left as it is."""
        self.root.mkdir(mode=PRIVATE_ROOT_MODE, parents=True, exist_ok=True)

    def make_private(self) -> None:
        """The data dir itself 0711: no other user can list it (apps, repos, logs, keys); see PRIVATE_ROOT_MODE."""
        self.create_root()
        os.chmod(self.root, PRIVATE_ROOT_MODE)
        for entry in os.scandir(self.root):
            if entry.name in TRAVERSED or entry.is_symlink():
                continue
            os.chmod(entry.path, 0o700 if entry.is_dir() else 0o600)

    @contextlib.contextmanager
    def migration_lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Held while the data dir is migrated: one process migrates, the others wait and find it done."""
        with exclusive_flock(self.root / "locks" / f"{GLOBAL}-migrate.lock", timeout=timeout,
                             busy="the data dir is being migrated by another process"):
            yield

    # -- events and deploy logs -------------------------------------------------------------------
    def append_event(self, event: dict[str, Any]) -> None:
        """One JSON line, one O_APPEND write (lines of concurrent writers never mix); rotated past 16 MiB."""
        path = self.root / "events.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > EVENTS_MAX_BYTES:
            self._rotate_events(path)

    def _rotate_events(self, path: Path) -> None:
        """events.log -> events.log.1 -> ... (under a lock: of racing writers, one rotates)."""
        with open(path.with_name("events.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if path.stat().st_size <= EVENTS_MAX_BYTES:
                    return  # another writer rotated it
            except FileNotFoundError:
                return
            for i in range(EVENTS_KEEP - 1, 0, -1):
                older = path.with_name(f"events.log.{i}")
                if older.exists():
                    older.replace(path.with_name(f"events.log.{i + 1}"))
            path.replace(path.with_name("events.log.1"))

    def read_events(self, n: int = 50) -> list[dict[str, Any]]:
        """The last `n` events, oldest first (from the rotated files too when needed); unreadable lines skipped."""
        lines: list[bytes] = []
        for name in ["events.log", *(f"events.log.{i}" for i in range(1, EVENTS_KEEP + 1))]:
            if len(lines) >= n:
                break
            lines = tail_lines(self.root / name, n - len(lines)) + lines
        out = []
        for line in lines[-n:]:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def deploy_log(self, app: str) -> Path:
        return self.root / "logs" / validate_app_name(app) / "deploy.log"

    # -- build directories ------------------------------------------------------------------------
    # Under the data dir, not the system's temp dir, so a process killed mid-build leaves nothing behind
    # that no one cleans: the name carries the owner's pid, and `clean_build_dirs` removes those of dead owners.
    def make_build_dir(self, app: str, kind: str) -> Path:
        """A new private (0700) directory for one build of `app`: DATA_DIR/builds/APP.PID.KIND.XXXX."""
        builds = self.root / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{validate_app_name(app)}.{os.getpid()}.{kind}.", dir=builds))

    def build_log(self, app: str, build: int) -> Path:
        """The output of one build (builds:output); deploy.log has every deploy's, one after another."""
        return self.root / "logs" / validate_app_name(app) / "builds" / f"{int(build)}.log"

    def props(self, plugin: str, app: str) -> list[str]:
        """The names of a plugin's properties of an app."""
        try:
            return sorted(os.listdir(self._prop_path(plugin, app, "x").parent))
        except FileNotFoundError:
            return []

    def clone_app(self, old: str, new: str, *, skip: frozenset[str]) -> None:
        """Copy the repo and the properties of `old` (but those of the plugins in `skip`) to a new app `new`.

        The repo is renamed into place last: until then `new` does not exist, and a failure removes every copy.
        """
        self.require_app(old)
        if self.app_exists(validate_app_name(new)):
            raise Conflict(f"app {new} already exists")
        repo_tmp = Path(tempfile.mkdtemp(prefix=f".{new}.", dir=self.repos_dir))
        copied: list[Path] = []
        try:
            shutil.copytree(self.repo_path(old), repo_tmp, symlinks=True, dirs_exist_ok=True)
            for d in sorted((self.root / "data").glob(f"*/{old}")):
                if d.parent.name in skip:
                    continue
                target = d.parent / new
                if target.exists():
                    raise Conflict(f"leftover settings of an app called {new} in {d.parent.name}: remove them first")
                tmp = Path(tempfile.mkdtemp(prefix=f".{new}.", dir=d.parent))
                copied.append(tmp)
                shutil.copytree(d, tmp, symlinks=True, dirs_exist_ok=True)
                os.rename(tmp, target)
                copied[-1] = target
            os.rename(repo_tmp, self.repo_path(new))
        except BaseException:
            shutil.rmtree(repo_tmp, ignore_errors=True)
            for target in copied:
                shutil.rmtree(target, ignore_errors=True)
            raise
        self.set("apps", new, "created", str(time.time()))


    def clean_build_dirs(self) -> list[str]:
        """Remove the build directories whose owner process is gone (never a running build's); their names."""
        try:
            entries = list((self.root / "builds").iterdir())
        except FileNotFoundError:
            return []
        removed = []
        for path in entries:
            owner = path.name.split(".")[1] if path.name.count(".") >= 3 else ""
            if owner.isdigit() and _alive(int(owner)):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed


def _fsync_dir(path: Path) -> None:
    """Make renames into `path` durable before what follows them (removing their source folder)."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:  # a killed process its parent has not reaped yet is a zombie: dead
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def tail_lines(path: Path, n: int, block: int = 1 << 16) -> list[bytes]:
    """The last `n` non-empty lines of a file, read backwards in blocks (a big log is not read whole)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = [line for line in data.split(b"\n") if line.strip()]
    if pos > 0:
        lines = lines[1:]  # the first one may be cut
    return lines[-n:]


@contextlib.contextmanager
def exclusive_flock(path: Path, *, timeout: float, busy: str, interval: float = 0.1,
                    on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing), waiting at most `timeout` s for it; then
    Conflict(`busy` and how long it waited). `on_wait` is called once if the lock is held by another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait:
                    on_wait()
                waited = True
                if time.monotonic() > deadline:
                    raise Conflict(f"{busy} (waited {timeout:.0f}s)") from None
                time.sleep(interval)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
