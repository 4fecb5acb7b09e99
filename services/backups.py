"""Backups of a service: a compressed dump under DATA_DIR/backups/KIND/NAME/, proven by a restore.

`backup` streams the datastore's dump (postgres: `pg_dump -Fc`, compressed) into a 0600 file; `--verify`
restores it into a throwaway container of the same image (no network, removed after) and compares the row
count of every table with the source's, taken right after the dump. A corrupt or truncated dump fails the
restore, and so the verification, loudly. Each backup is listed with its size, time and verification.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushdock import attach
from pushdock.errors import NotFound, PushdockError, UsageError
from services import engine, model

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore
    from services.model import Service

INDEX = "backups"
# Exact row counts of every user table, one `schema.table count` line each (query_to_xml runs one count per table).
COUNTS_SQL = (
    "select table_schema || '.' || table_name || ' ' || (xpath('/row/c/text()', query_to_xml(format("
    "'select count(*) as c from %I.%I', table_schema, table_name), false, true, '')))[1]::text "
    "from information_schema.tables where table_type = 'BASE TABLE' "
    "and table_schema not in ('pg_catalog', 'information_schema') order by 1"
)


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
            raise PushdockError(f"{argv[0]} failed (exit status {code}): {lines[-1][:200]}")


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
            raise PushdockError(f"{argv[0]} failed (exit status {code}): {lines[-1][:200]}")


def _counts(c: Any, name: str) -> dict[str, int]:
    code, out = c.exec_run(["psql", "-U", "postgres", "-d", name, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", COUNTS_SQL])
    if code != 0:
        raise PushdockError(f"counting rows failed: {out.decode(errors='replace').strip()[-200:]}")
    pairs = (line.rsplit(" ", 1) for line in out.decode().splitlines() if line.strip())
    return {table: int(n) for table, n in pairs}


def backup(ctx: Context, ds: Datastore, service: Service, *, verify: bool) -> Backup:
    """Dump the service into a new file; with `verify`, prove it by a restore (PushdockError if that fails)."""
    c = engine.running(ctx, service)
    folder = directory(ctx, service)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    file = f"{service.name}-{stamp}-{secrets.token_hex(2)}.dump"
    path = folder / file
    with engine.engine_errors(f"backing up {service.kind} service {service.name}"):
        try:
            _exec_to_file(engine.client().api, c.id, ds.export_argv(service.name), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        counts = _counts(c, service.name) if verify else {}
    made = Backup(file, path, path.stat().st_size, time.time(), "no")
    _record(ctx, service, made)
    if verify:
        made = verify_file(ctx, ds, service, made, counts)
    return made


def verify_file(ctx: Context, ds: Datastore, service: Service, made: Backup, source: dict[str, int]) -> Backup:
    """Restore `made` into a throwaway container and compare per-table row counts with `source`."""
    try:
        restored = _restore_throwaway(ctx, ds, service, made.path)
        diff = sorted(t for t in set(source) | set(restored) if source.get(t) != restored.get(t))
        if diff:
            t = diff[0]
            raise PushdockError(f"table {t} has {restored.get(t, 'no')} rows in the restored dump, "
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


def _restore_throwaway(ctx: Context, ds: Datastore, service: Service, path: Path) -> dict[str, int]:
    api = engine.client().api
    with engine.engine_errors("verifying a backup"):
        made = api.create_container(
            ds.image, environment=ds.environment(service.name, secrets.token_urlsafe(16)),
            labels=engine.labels(ctx, service) | {"pushdock.one-off": "backup-verify"}, network_disabled=True,
            host_config=api.create_host_config(init=True), use_config_proxy=False)
        cid = made["Id"]
        try:
            api.start(cid)
            throwaway = engine.client().containers.get(cid)
            engine.wait_ready_container(throwaway, ds, service.name, f"the verification container of {service.name}")
            _exec_from_file(api, cid, ds.import_argv(service.name), path)
            return _counts(throwaway, service.name)
        finally:
            api.remove_container(cid, force=True)


def find(ctx: Context, service: Service, file: str) -> Backup:
    if "/" in file or file in (".", "..") or not file:
        raise UsageError(f"FILE is the name of one of the service's backups ({service.kind}:backups "
                         f"{service.name}), not a path: {file[:60]!r}")
    for b in listed(ctx, service):
        if b.file == file:
            return b
    raise NotFound(f"{service.kind} service {service.name} has no backup {file[:60]!r}")


def restore(ctx: Context, ds: Datastore, service: Service, file: str) -> Backup:
    b = find(ctx, service, file)
    c = engine.running(ctx, service)
    with engine.engine_errors(f"restoring {service.kind} service {service.name}"):
        _exec_from_file(engine.client().api, c.id, ds.import_argv(service.name), b.path)
    return b


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


def timer_jobs(ctx: Context, kinds: dict[str, Datastore]) -> dict[str, tuple[str, Any]]:
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


def scheduled(ctx: Context, ds: Datastore, kind: str, name: str, keep: int) -> None:
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
