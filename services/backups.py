"""Backups of a service: a compressed file under DATA_DIR/backups/KIND/NAME/, proven by a restore.

What a kind supplies is `pushdock.datastore.Backupable`: the argv that writes the file (postgres: `pg_dump -Fc`;
redis: an RDB snapshot, gzipped), the argv that restores one, and how to count what is in it (rows per table,
keys per database). This module does the rest for every kind: the 0600 file, `--verify` (the file restored into
a throwaway container of the same image, no network, removed after, and every count compared with the
source's, taken right after the backup), the index `KIND:backups` lists, restores, schedules and retention.
A corrupt or truncated file fails the restore, and so the verification, loudly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pushdock import attach
from pushdock.errors import NotFound, PushdockError, UsageError
from services import engine, model

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Backupable
    from services.model import Service

INDEX = "backups"


@dataclass(frozen=True)
class Backup:
    file: str
    path: Path
    size: int
    time: float
    verified: str  # "yes", "no" (not verified) or "failed: why"


def directory(ctx: Context, service: Service) -> Path:
    return ctx.state.path("backups", service.kind, service.name)


def listed(ctx: Context, service: Service) -> list[Backup]:
    raw = model.records(ctx.state, service.kind).get_json(service.name, INDEX, []) or []
    out = []
    for entry in raw:
        path = directory(ctx, service) / str(entry["file"])
        if path.is_file():
            out.append(Backup(entry["file"], path, int(entry["size"]), float(entry["time"]), str(entry["verified"])))
    return out


def _record(ctx: Context, service: Service, backup: Backup) -> None:
    with ctx.state.global_lock(model.plugin(service.kind)):
        rows = [b for b in listed(ctx, service) if b.file != backup.file] + [backup]
        model.records(ctx.state, service.kind).set_json(service.name, INDEX, [
            {"file": b.file, "size": b.size, "time": b.time, "verified": b.verified} for b in rows])


def _exec_to_file(api: Any, cid: str, argv: list[str], out: Path) -> None:
    """argv in the container, its stdout into `out` (0600); PushdockError with stderr's last line if it fails."""
    with tempfile.TemporaryFile() as err, open(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                                                  "wb") as f:
        exec_id = api.exec_create(cid, argv, stdin=False, stdout=True, stderr=True)["Id"]
        sock = api.exec_start(exec_id, socket=True)
        attach.pump(sock, attach.Fds(None, f.fileno(), err.fileno()), tty=False)
        code = int(api.exec_inspect(exec_id).get("ExitCode") or 0)
        if code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or ["no output"]
            raise PushdockError(f"{_shown(argv)} failed (exit status {code}): {lines[-1][:200]}")


def _exec_from_file(api: Any, cid: str, argv: list[str], source: Path) -> None:
    """argv in the container with `source` on its stdin; PushdockError with stderr's last line if it fails."""
    with tempfile.TemporaryFile() as err, open(source, "rb") as f:
        exec_id = api.exec_create(cid, argv, stdin=True, stdout=True, stderr=True)["Id"]
        sock = api.exec_start(exec_id, socket=True)
        attach.pump(sock, attach.Fds(f.fileno(), None, err.fileno()), tty=False)
        code = int(api.exec_inspect(exec_id).get("ExitCode") or 0)
        if code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or ["no output"]
            raise PushdockError(f"{_shown(argv)} failed (exit status {code}): {lines[-1][:200]}")


def _shown(argv: list[str]) -> str:
    """The program for messages: a script's `sh -c` is no name to show."""
    return "the script" if argv[0] == "sh" else argv[0]


def _counts(c: Any, ds: Backupable, name: str) -> dict[str, int]:
    code, out = c.exec_run(ds.counts_argv(name))
    if code != 0:
        raise PushdockError(f"counting {ds.counted} failed: {out.decode(errors='replace').strip()[-200:]}")
    return ds.parse_counts(out.decode(errors="replace"))


def backup(ctx: Context, ds: Backupable, service: Service, *, verify: bool) -> Backup:
    """Back the service up into a new file; with `verify`, prove it by a restore (PushdockError if that fails)."""
    c = engine.running(ctx, service)
    folder = directory(ctx, service)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    file = f"{service.name}-{stamp}-{secrets.token_hex(2)}{ds.backup_suffix}"
    path = folder / file
    with engine.engine_errors(f"backing up {service.kind} service {service.name}"):
        try:
            _exec_to_file(engine.client().api, c.id, ds.backup_argv(service.name), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        counts = _counts(c, ds, service.name) if verify else {}
    made = Backup(file, path, path.stat().st_size, time.time(), "no")
    _record(ctx, service, made)
    if verify:
        made = verify_file(ctx, ds, service, made, counts)
    return made


def verify_file(ctx: Context, ds: Backupable, service: Service, made: Backup, source: dict[str, int]) -> Backup:
    """Restore `made` into a throwaway container and compare its counts (per table, per database) with `source`."""
    try:
        restored = _restore_throwaway(ctx, ds, service, made.path)
        diff = sorted(t for t in set(source) | set(restored) if source.get(t) != restored.get(t))
        if diff:
            t = diff[0]
            raise PushdockError(f"{t} has {restored.get(t, 'no')} {ds.counted} in the restored backup, "
                                f"{source.get(t, 'no')} in the service")
    except PushdockError as e:
        failed = Backup(made.file, made.path, made.size, made.time, f"failed: {e.message}")
        _record(ctx, service, failed)
        ctx.event(f"{service.kind}:backup-verify", result="failed", service=service.name, file=made.file)
        raise PushdockError(f"verification of {made.file} failed: {e.message}") from None
    ok = Backup(made.file, made.path, made.size, made.time, "yes")
    _record(ctx, service, ok)
    ctx.event(f"{service.kind}:backup-verify", service=service.name, file=made.file, tables=len(source))
    return ok


def _restore_throwaway(ctx: Context, ds: Backupable, service: Service, path: Path) -> dict[str, int]:
    api = engine.client().api
    volume = None
    with engine.engine_errors("verifying a backup"), contextlib.ExitStack() as cleanup:
        if ds.restore_offline:  # restored into a volume of its own, then a server started on it
            volume = f"{engine.resource_name(ctx, service)}-verify-{secrets.token_hex(3)}"
            engine.client().volumes.create(volume, labels=engine.labels(ctx, service))
            cleanup.callback(_remove_volume, volume)
            _restore_offline(ctx, ds, service, volume, path)
        binds = {volume: {"bind": ds.data_path, "mode": "rw"}} if volume else {}
        made = api.create_container(
            ds.image, environment=ds.environment(service.name, secrets.token_urlsafe(16)),
            labels=engine.labels(ctx, service) | {"pushdock.one-off": "backup-verify"}, network_disabled=True,
            host_config=api.create_host_config(init=True, binds=binds), use_config_proxy=False)
        cleanup.callback(api.remove_container, made["Id"], force=True)
        api.start(made["Id"])
        throwaway = engine.client().containers.get(made["Id"])
        engine.wait_ready_container(throwaway, ds, service.name, f"the verification container of {service.name}")
        if not ds.restore_offline:
            _exec_from_file(api, made["Id"], ds.restore_argv(service.name), path)
        return _counts(throwaway, ds, service.name)


def _remove_volume(name: str) -> None:
    with contextlib.suppress(Exception):
        engine.client().volumes.get(name).remove(force=True)


def _restore_offline(ctx: Context, ds: Backupable, service: Service, volume: str, path: Path) -> None:
    """restore_argv in a helper container of the image on `volume` (its server not running), `path` on stdin."""
    api = engine.client().api
    helper = api.create_container(
        ds.image, entrypoint=["sleep", "infinity"], labels=engine.labels(ctx, service) | {
            "pushdock.one-off": "backup-restore"}, network_disabled=True, use_config_proxy=False,
        host_config=api.create_host_config(init=True, binds={volume: {"bind": ds.data_path, "mode": "rw"}}))
    try:
        api.start(helper["Id"])
        _exec_from_file(api, helper["Id"], ds.restore_argv(service.name), path)
    finally:
        api.remove_container(helper["Id"], force=True)


def find(ctx: Context, service: Service, file: str) -> Backup:
    if "/" in file or file in (".", "..") or not file:
        raise UsageError(f"FILE is the name of one of the service's backups ({service.kind}:backups "
                         f"{service.name}), not a path: {file[:60]!r}")
    for b in listed(ctx, service):
        if b.file == file:
            return b
    raise NotFound(f"{service.kind} service {service.name} has no backup {file[:60]!r}")


def restore(ctx: Context, ds: Backupable, service: Service, file: str) -> Backup:
    """One of the service's backups (by name) into it."""
    b = find(ctx, service, file)
    load(ctx, ds, service, b.path)
    return b


def load(ctx: Context, ds: Backupable, service: Service, path: Path) -> None:
    """A backup file (or an export) into the live service: streamed into the running server, or, for a kind that
    restores offline, with the service stopped for it and started again (ready) whatever happens."""
    c = engine.running(ctx, service)
    with engine.engine_errors(f"restoring {service.kind} service {service.name}"):
        if not ds.restore_offline:
            _exec_from_file(engine.client().api, c.id, ds.restore_argv(service.name), path)
            return
        c.stop(timeout=30)
        try:
            _restore_offline(ctx, ds, service, engine.resource_name(ctx, service), path)
        finally:
            c.start()
            engine.wait_ready(ctx, ds, service)


@contextlib.contextmanager
def spooled(ctx: Context, service: Service, stream: IO[bytes]) -> Iterator[Path]:
    """`stream` (an import on stdin) in a 0600 file beside the service's backups, removed after."""
    folder = directory(ctx, service)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".import-")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(stream, f, 1 << 20)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


# -- schedules: serve's timer (the timer-jobs trigger) -------------------------------------------------------
SCHEDULE = "backup-schedule"
DEFAULT_KEEP = 7
MAX_KEEP = 1000


def set_schedule(ctx: Context, service: Service, cron: str, keep: int) -> str:
    """Store the schedule (its cron expression checked); the expression as five fields."""
    from pushdock.timer import cron_expression  # noqa: PLC0415 -- start-up: loads only when this path runs

    expression = cron_expression(cron)
    model.records(ctx.state, service.kind).set_json(service.name, SCHEDULE, {"cron": expression, "keep": keep})
    return expression


def clear_schedule(ctx: Context, service: Service) -> None:
    if model.records(ctx.state, service.kind).get_json(service.name, SCHEDULE) is None:
        raise NotFound(f"{service.kind} service {service.name} has no backup schedule")
    model.records(ctx.state, service.kind).delete(service.name, SCHEDULE)


def schedule_of(ctx: Context, service: Service) -> dict[str, Any] | None:
    raw = model.records(ctx.state, service.kind).get_json(service.name, SCHEDULE)
    return raw if isinstance(raw, dict) else None


def timer_jobs(ctx: Context, kinds: dict[str, Backupable]) -> dict[str, tuple[str, Any]]:
    """{`KIND-backup:NAME`: (cron, run)} for every service with a schedule."""
    out: dict[str, tuple[str, Any]] = {}
    for kind, ds in kinds.items():
        for service in model.all_of(ctx.state, kind):
            sched = schedule_of(ctx, service)
            if sched:
                keep = int(sched.get("keep", DEFAULT_KEEP))
                out[f"{kind}-backup:{service.name}"] = (
                    str(sched["cron"]), lambda ds=ds, s=service, keep=keep: scheduled(ctx, ds, s.kind, s.name, keep))
    return out


def scheduled(ctx: Context, ds: Backupable, kind: str, name: str, keep: int) -> None:
    """A timer tick: a verified backup (its result in events and `backups`), then keep the newest `keep`."""
    from loguru import logger  # noqa: PLC0415 -- start-up: loguru (log.py configures it as it loads) loads when first used

    service = model.find(ctx.state, kind, name)
    if service is None:
        return
    started = time.time()
    try:
        made = backup(ctx, ds, service, verify=True)
        ctx.event(f"{kind}:backup", service=name, file=made.file, size=made.size, started=started)
    except PushdockError as e:
        logger.warning("scheduled backup failed", kind=kind, service=name, error=e.message)
        ctx.event(f"{kind}:backup", result="failed", service=name, error=e.message, started=started)
    prune(ctx, service, keep)


def prune(ctx: Context, service: Service, keep: int) -> list[str]:
    """Remove all but the newest `keep` backups of the service; the files removed."""
    with ctx.state.global_lock(model.plugin(service.kind)):
        rows = sorted(listed(ctx, service), key=lambda b: b.time, reverse=True)
        gone = rows[keep:]
        for b in gone:
            b.path.unlink(missing_ok=True)
        model.records(ctx.state, service.kind).set_json(service.name, INDEX, [
            {"file": b.file, "size": b.size, "time": b.time, "verified": b.verified} for b in rows[:keep]])
    return [b.file for b in gone]
