"""receive-pack for pushdock: validate every ref, deploy the deploy branch, then move the refs.

dulwich's own receive loop ignores a failed compare-and-swap, runs side effects before `--atomic`
has validated every ref, has no connectivity check and refuses push options and shallow pushes
(research/gitserver.md §2). This handler owns the whole flow instead:

  advertise -> read commands (+ `shallow` lines) -> read push options -> take the app lock
  -> ingest the pack -> validate every ref (no side effects) -> deploy the deploy branch
  -> write refs with compare-and-swap -> report-status -> release the lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dulwich.errors import GitProtocolError, HangupException
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import Commit, ObjectID, valid_hexsha
from dulwich.pack import UnresolvedDeltas
from dulwich.protocol import (
    CAPABILITIES_REF,
    CAPABILITY_ATOMIC,
    CAPABILITY_PUSH_OPTIONS,
    CAPABILITY_REPORT_STATUS,
    CAPABILITY_SIDE_BAND_64K,
    SIDE_BAND_CHANNEL_PROGRESS,
    ZERO_SHA,
    Protocol,
    format_ref_line,
    symref_capabilities,
)
from dulwich.refs import HEADREF, Ref, check_ref_format
from dulwich.server import ReceivePackHandler
from loguru import logger

from gitserver import configref, packin
from gitserver.backend import AppBackend, app_from_path
from gitserver.configref import CONFIG_REF
from gitserver.connectivity import Unconnected, check_connected
from gitserver.settings_file import ConfigFileError
from hooks import pipeline
from pushdock.errors import PushdockError, internal_error
from pushdock.progress import Progress

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dulwich.repo import Repo

BRANCH_PREFIX = b"refs/heads/"
# skip-deploy: store the deploy branch without deploying (refs/meta/config: apply without restarting);
# no-restart: apply refs/meta/config without restarting (the deploy branch: store without deploying).
PUSH_OPTIONS = frozenset({"skip-deploy", "no-restart"})
NO_RESTART = frozenset({"skip-deploy", "no-restart"})
STALE = "stale info: ref moved during push; fetch and retry"
MAX_REASON = 200


def one_line(text: str, limit: int = MAX_REASON) -> bytes:
    """An `ng` reason: a single line (git prints it inside parentheses), capped."""
    flat = " ".join(text.split()) or "rejected"
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat.encode("utf-8", "replace")


@dataclass
class Command:
    """One `old new ref` line of a push, and why it was refused (None: accepted so far)."""

    old: ObjectID
    new: ObjectID
    ref: Ref
    reason: str | None = None
    config: configref.AppConfig | None = None  # refs/meta/config: the validated settings to apply

    @property
    def deleting(self) -> bool:
        return self.new == ZERO_SHA

    @property
    def branch(self) -> str:
        return self.ref.removeprefix(BRANCH_PREFIX).decode("utf-8", "replace")


class PushdockReceivePack(ReceivePackHandler):
    """The receive side of `git push` into an app repository (backend must be an AppBackend)."""

    repo: Repo  # what AppBackend.open_repository returns (dulwich types it as the BackendRepo protocol)
    keepalive_after = 5.0  # seconds of silence before an empty band-1 packet, like C git's receive.keepAlive

    def __init__(
        self,
        backend: AppBackend,
        args: Sequence[str],
        proto: Protocol,
        stateless_rpc: bool = False,
        advertise_refs: bool = False,
    ) -> None:
        super().__init__(backend, args, proto, stateless_rpc=stateless_rpc, advertise_refs=advertise_refs)
        self.ctx = backend.ctx
        self.app = app_from_path(args[0])
        self.push_options: list[str] = []
        self.client_shallow: set[ObjectID] = set()
        self.started = time.time()  # the push's events carry its duration
        self.client_gone = False
        self.detach = False  # the SSH worker: deferred deploy work runs in a child process (see _run_after)
        self._after: tuple[list[Callable[[Progress], None]], dict[str, float]] | None = None
        self._sideband = False
        self._write_lock = threading.Lock()
        self._last_write = time.monotonic()
        raw_write = proto.write

        # Progress lines, keepalives and report-status come from two threads: one packet at a time.
        def write(data: bytes) -> int | None:
            with self._write_lock:
                try:
                    return raw_write(data)
                except Exception:
                    self.client_gone = True
                    raise
                finally:
                    self._last_write = time.monotonic()

        proto.write = write

    def capabilities(self) -> list[bytes]:
        return [*super().capabilities(), CAPABILITY_PUSH_OPTIONS]

    # -- the flow ------------------------------------------------------------------------------------
    def handle(self) -> None:
        if self.advertise_refs or not self.stateless_rpc:
            self._advertise()
            if self.advertise_refs:
                return
        commands = self._read_commands()
        if not commands:
            return
        if self.has_capability(CAPABILITY_PUSH_OPTIONS):  # a section between the commands and the pack
            self.push_options = [o.rstrip(b"\n").decode("utf-8", "replace") for o in self.proto.read_pkt_seq()]
        self._sideband = self.has_capability(CAPABILITY_SIDE_BAND_64K)
        with contextlib.ExitStack() as held:
            with self._keepalive():
                lock_error = self._lock(held)
                status = self._receive(commands, lock_error)
            if self.has_capability(CAPABILITY_REPORT_STATUS) and not self.client_gone:
                try:
                    self._report_status(status)
                except (OSError, GitProtocolError):
                    logger.info("client left before the push report", app=self.app)
        self._run_after()

    def _advertise(self) -> None:
        refs: list[tuple[bytes, bytes]] = sorted(  # as C git
            (name, sha) for name, sha in self.repo.get_refs().items() if name != HEADREF
        )
        symrefs = sorted(self.repo.refs.get_symrefs().items())
        if not refs:
            refs = [(CAPABILITIES_REF, ZERO_SHA)]
        caps = [*self.capabilities(), *symref_capabilities(symrefs)]
        self.proto.write_pkt_line(format_ref_line(refs[0][0], refs[0][1], caps))
        for name, sha in refs[1:]:
            self.proto.write_pkt_line(format_ref_line(name, sha))
        self.proto.write_pkt_line(None)

    def _read_commands(self) -> list[Command]:
        line = self.proto.read_pkt_line()
        # A push from a shallow clone starts with `shallow <sha>` lines (stock dulwich rejects them).
        while line is not None and line.startswith(b"shallow "):
            sha = line[len(b"shallow ") :].strip()
            if not valid_hexsha(sha):
                raise PushdockError(f"protocol error: invalid shallow line {_excerpt(line)}")
            self.client_shallow.add(ObjectID(sha))
            line = self.proto.read_pkt_line()
        if line is None:
            return []
        line, _, caps = line.partition(b"\0")  # as C git: the first NUL ends the command, capabilities follow
        try:
            self.set_client_capabilities(caps.split())
        except GitProtocolError as e:
            raise PushdockError(f"protocol error: {e}") from None
        commands = []
        while line:
            # As C git: the ref name is everything after the second space; a bad one is refused by _check.
            parts = line.rstrip(b"\n").split(b" ", 2)
            if len(parts) != 3 or not valid_hexsha(parts[0]) or not valid_hexsha(parts[1]):
                raise PushdockError(f"protocol error: expected 'OLD NEW REF', got {_excerpt(line)}")
            commands.append(Command(ObjectID(parts[0]), ObjectID(parts[1]), Ref(parts[2])))
            line = self.proto.read_pkt_line()
        return commands

    def _lock(self, held: contextlib.ExitStack) -> str | None:
        """Take the app lock (telling the pusher when it waits); the reason to refuse every ref, if any."""
        try:
            held.enter_context(self.ctx.state.app_lock(
                self.app, timeout=self.ctx.settings.lock_timeout,
                on_wait=lambda: self.say(f"waiting for another deploy of {self.app} to finish..."),
            ))
        except PushdockError as e:
            return str(e)
        return None

    def _receive(self, commands: list[Command], lock_error: str | None) -> list[tuple[bytes, bytes]]:
        unpack = self._unpack(commands)
        if unpack != "ok":
            return [(b"unpack", one_line(unpack)), *((c.ref, b"unpacker error") for c in commands)]
        atomic = self.has_capability(CAPABILITY_ATOMIC)
        deploy_ref = self._deploy_ref(commands)
        self._validate(commands, deploy_ref, lock_error)
        # settings first, then code; with --atomic, the first failure stops the rest
        if not (atomic and _fail_together(commands)):
            self._apply_configs(commands)
        if not (atomic and _fail_together(commands)):
            self._deploy(commands, deploy_ref)
        if not (atomic and _fail_together(commands)):
            self._write_refs(commands, atomic)
        self._record(commands)
        return [(b"unpack", b"ok"), *((c.ref, b"ok" if c.reason is None else one_line(c.reason)) for c in commands)]

    # -- steps ---------------------------------------------------------------------------------------
    def _unpack(self, commands: list[Command]) -> str:
        if all(c.deleting for c in commands):
            return "ok"  # no pack follows
        limit = self.ctx.settings.max_push_bytes or self._receive_max_input_size()
        objects = Path(self.repo.object_store.path)
        before = set(objects.glob("tmp_pack_*"))
        try:
            packin.add_pack(self.repo.object_store, self.proto.read, getattr(self.proto, "recv", None),
                            max_input_size=limit)
        except Exception as e:
            # a temp file left behind (packin removes its own) is ours: the app lock is held
            for tmp in set(objects.glob("tmp_pack_*")) - before:
                tmp.unlink(missing_ok=True)
            if isinstance(e, HangupException):
                raise
            if isinstance(e, PackInputTooLarge):
                return f"pack exceeds the limit of {limit} bytes (PUSHDOCK_MAX_PUSH_BYTES)"
            if isinstance(e, packin.BadPack):
                logger.warning("pack rejected", app=self.app, error=str(e))
                return f"bad pack: {e}"
            if isinstance(e, UnresolvedDeltas):  # a thin pack against bases we lack (its repr: a list of SHAs)
                logger.warning("thin pack with missing bases", app=self.app, missing=len(e.shas))
                return "the pack refers to objects the server does not have"
            logger.warning("pack rejected", app=self.app, error=repr(e))  # corrupt or truncated
            return f"{type(e).__name__}: {e}"
        return "ok"

    def _deploy_ref(self, commands: list[Command]) -> Ref | None:
        """The configured deploy branch; unset, the one this push would make it (HEAD's branch first)."""
        configured = self.ctx.state.get("git", self.app, "deploy-branch")
        if configured:
            return Ref(BRANCH_PREFIX + configured.strip().encode())
        candidates = [c.ref for c in commands if c.ref.startswith(BRANCH_PREFIX) and not c.deleting
                      and check_ref_format(c.ref) and _utf8(c.ref)]
        head = self.repo.refs.get_symrefs().get(HEADREF)
        if head in candidates:
            return head
        return candidates[0] if candidates else None

    def _validate(self, commands: list[Command], deploy_ref: Ref | None, lock_error: str | None) -> None:
        """Decide every ref's fate before any side effect; the refs are read under the lock."""
        unknown = [o for o in self.push_options if o.partition("=")[0] not in PUSH_OPTIONS]
        current = self.repo.get_refs()
        have = [sha for name, sha in current.items() if name != HEADREF]
        shallow = self.repo.get_shallow() | self.client_shallow
        for c in commands:
            if lock_error:
                c.reason = lock_error
            elif unknown:
                c.reason = f"unknown push option {unknown[0]!r}"
            else:
                try:
                    c.reason = self._check(c, current.get(c.ref, ZERO_SHA), deploy_ref, have, shallow)
                except Exception:  # an unreadable object, say: refuse this ref, keep the others
                    c.reason = internal_error("ref check crashed", app=self.app, ref=c.ref.decode())

    def _check(
        self, c: Command, current: ObjectID, deploy_ref: Ref | None, have: list[ObjectID], shallow: set[ObjectID]
    ) -> str | None:
        if not c.ref.startswith(b"refs/") or not check_ref_format(c.ref):  # it refuses NUL and control chars
            return "funny refname"
        if not _utf8(c.ref):
            return "ref names must be valid UTF-8"
        if c.ref != CONFIG_REF and not c.ref.startswith(BRANCH_PREFIX):
            return "only branches and refs/meta/config can be pushed"
        if current != c.old:
            return STALE
        if c.ref == CONFIG_REF:
            return self._check_config(c, have, shallow)
        if c.deleting:
            if c.ref == deploy_ref and self.ctx.state.get("git", self.app, "deploy-branch"):
                return f"the deploy branch {c.branch} cannot be deleted"
            return None
        try:
            check_connected(self.repo.object_store, [c.new], have, shallow)
        except Unconnected as e:
            return f"bad push: {e}"
        if c.ref == deploy_ref and not self._restart_off() and self.ctx.state.get("apps", self.app, "locked"):
            return f"deploys of {self.app} are locked (run apps:unlock {self.app})"
        return None

    def _check_config(self, c: Command, have: list[ObjectID], shallow: set[ObjectID]) -> str | None:
        """A push to refs/meta/config: a fast-forward whose files are valid as a whole (no side effects)."""
        if c.deleting:
            return "refs/meta/config cannot be deleted"
        try:
            check_connected(self.repo.object_store, [c.new], have, shallow)
            c.config = configref.validate_push(self.ctx, self.app, self.repo, c.old, c.new)
        except Unconnected as e:
            return f"bad push: {e}"
        except ConfigFileError as e:
            return str(e)
        return None

    def _restart_off(self) -> bool:
        """`-o skip-deploy` or `-o no-restart` was given."""
        return bool(NO_RESTART & {o.partition("=")[0] for o in self.push_options})

    def _apply_configs(self, commands: list[Command]) -> None:
        for c in commands:
            if c.config is None or c.reason is not None:
                continue
            sha = c.new.decode()[:7]
            progress = Progress(self._progress_line, logfile=self.ctx.state.deploy_log(self.app))
            try:
                changed = configref.changes(configref.from_state(self.ctx.state, self.app), c.config)
                progress.step(f"Applying refs/meta/config ({sha}): {'; '.join(changed) or 'no changes'}")
                configref.apply(self.ctx, self.app, self.repo, c.config, restart=not self._restart_off(),
                                why=f"refs/meta/config {sha}", progress=progress)
            except PushdockError as e:
                progress.line(f" !     {e}")
                c.reason = str(e)
            except Exception:
                c.reason = internal_error("config apply crashed", app=self.app)
                progress.line(f" !     {c.reason}")
            finally:
                progress.close()

    def _deploy(self, commands: list[Command], deploy_ref: Ref | None) -> None:
        target = None
        for c in commands:
            if c.reason is not None or c.deleting or c.ref == CONFIG_REF:
                continue
            if c.ref == deploy_ref:
                target = c
            else:
                shown = deploy_ref.removeprefix(BRANCH_PREFIX).decode() if deploy_ref else "not set"
                self.say(f"branch {c.branch} stored, not deployed (the deploy branch is {shown})")
        if target is None:
            return
        if self._restart_off():
            given = next(o for o in self.push_options if o.partition("=")[0] in NO_RESTART)
            self.say(f"-----> {target.branch} stored, deploy skipped (-o {given})")
            return

        progress = Progress(self._progress_line, logfile=self.ctx.state.deploy_log(self.app))
        progress.add_stage("receive", time.time() - self.started)  # the pack in, checked, under the app's lock
        progress.deferred = []  # retiring the old containers waits until the pusher has its answer
        try:
            pipeline.deploy_push(self.ctx, self.app, target.new.decode(), progress, branch=target.branch)
        except PushdockError as e:
            progress.line(f" !     {e}")
            target.reason = str(e)
        except Exception:
            target.reason = internal_error("deploy crashed", app=self.app)
            progress.line(f" !     {target.reason}")
        else:
            if not self.ctx.state.get("git", self.app, "deploy-branch"):
                self.ctx.state.set("git", self.app, "deploy-branch", target.branch)
                self.repo.refs.set_symbolic_ref(HEADREF, target.ref)
                self._record_settings(f"git push: deploy branch {target.branch}")
        finally:
            progress.step(progress.stage_times(pending="retire" if progress.deferred else None))
            progress.close()
            if progress.deferred:
                self._after = (progress.deferred, dict(progress.stages))

    def _run_after(self) -> None:
        """The deploy's deferred jobs (retiring old containers, pruning images), once the pusher has its answer:
        in a child process of their own when this process ends with the push (`detach`: the SSH worker), else
        in a thread. They take the app's lock again (a push that came first retires the same containers
        itself) and end the deploy log with the stage times, retire included."""
        if self._after is None:
            return
        jobs, stages = self._after
        self._after = None
        if not self.detach:
            threading.Thread(target=self._jobs, args=(jobs, stages), name=f"retire-{self.app}").start()
            return
        if os.fork() != 0:
            return
        try:  # the child: out of the worker's session, stdio to /dev/null so the SSH channel closes now
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            self._jobs(jobs, stages)
        finally:
            os._exit(0)

    def _jobs(self, jobs: list[Callable[[Progress], None]], stages: dict[str, float]) -> None:
        try:
            progress = Progress(logfile=self.ctx.state.deploy_log(self.app), header=False)
            progress.stages = stages
            with self.ctx.state.app_lock(self.app, timeout=self.ctx.settings.lock_timeout):
                for job in jobs:
                    job(progress)
            progress.step(progress.stage_times())
            progress.close()
        except Exception:
            logger.exception("deferred deploy work failed", app=self.app)

    def _record_settings(self, summary: str) -> None:
        """Commit a setting the push itself changed to refs/meta/config (the lock is held: no re-locking)."""
        try:
            configref.commit_state(self.ctx, self.app, self.repo, summary)
        except (PushdockError, OSError) as e:  # the deploy succeeded: report it, but keep the push's result
            logger.error("settings not recorded", app=self.app, error=str(e))
            self.say(f" !     settings not recorded in refs/meta/config: {e}")

    def _write_refs(self, commands: list[Command], atomic: bool) -> None:
        accepted = [c for c in commands if c.reason is None]
        if self.client_shallow and any(not c.deleting for c in accepted):
            self._record_shallow()
        written: list[Command] = []
        for c in accepted:
            try:
                if c.deleting:
                    ok = self.repo.refs.remove_if_equals(c.ref, c.old)
                else:
                    ok = self.repo.refs.set_if_equals(c.ref, c.old, c.new)
                if not ok:
                    c.reason = STALE
            except (OSError, ValueError, KeyError) as e:
                logger.warning("ref write failed", app=self.app, ref=c.ref.decode(), error=repr(e))
                c.reason = "failed to write the ref"
            if c.reason is None:
                written.append(c)
            elif atomic:
                self._roll_back(written)
                _fail_together(commands)
                return

    def _roll_back(self, written: list[Command]) -> None:
        for c in reversed(written):
            try:
                if c.old == ZERO_SHA:
                    self.repo.refs.remove_if_equals(c.ref, c.new)
                else:
                    self.repo.refs.set_if_equals(c.ref, c.new, c.old)
            except (OSError, ValueError, KeyError) as e:
                logger.error("atomic roll-back failed", app=self.app, ref=c.ref.decode(), error=repr(e))

    def _record_shallow(self) -> None:
        """Remember the client's shallow boundaries whose parents we lack (C git's receive.shallowUpdate)."""
        store = self.repo.object_store
        boundaries = set()
        for sha in self.client_shallow:
            commit = store[sha] if sha in store else None
            if isinstance(commit, Commit) and any(p not in store for p in commit.parents):
                boundaries.add(sha)
        if boundaries:
            self.repo.update_shallow(boundaries, None)

    def _record(self, commands: list[Command]) -> None:
        for c in commands:
            ref, sha = c.ref.decode("utf-8", "replace"), c.new.decode()
            logger.info("push", app=self.app, ref=ref, sha=sha[:12], result=c.reason or "ok")
            extra = {} if c.reason is None else {"result": "rejected", "reason": c.reason}
            try:
                self.ctx.event("git:push", app=self.app, ref=ref, sha=sha, started=self.started, **extra)
            except OSError as e:  # the refs have moved already: the pusher must still hear so
                logger.error("push event not recorded", app=self.app, ref=ref, error=repr(e))

    # -- talking to the pusher -------------------------------------------------------------------------
    def _progress_line(self, line: str) -> None:
        """A Progress sink: one `remote:` line on band 2 (raises once the client is gone)."""
        if self._sideband and not self.client_gone:
            self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, line.encode("utf-8", "replace") + b"\n")

    def say(self, line: str) -> None:
        """Best effort: tell the pusher something; never fails."""
        try:
            self._progress_line(line)
        except Exception:
            self.client_gone = True

    @contextlib.contextmanager
    def _keepalive(self) -> Iterator[None]:
        """An empty band-1 packet after `keepalive_after` seconds of silence, so idle links stay up."""
        if not self._sideband:
            yield
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(min(1.0, self.keepalive_after / 2)):
                if self.client_gone:
                    return
                if time.monotonic() - self._last_write >= self.keepalive_after:
                    try:
                        self.proto.write_pkt_line(b"\x01")
                    except Exception:
                        return

        thread = threading.Thread(target=run, name=f"keepalive-{self.app}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _excerpt(line: bytes, limit: int = 60) -> str:
    """A short, printable excerpt of a client's line for an error message (it is untrusted)."""
    shown = repr(line[:limit])
    return shown + ("..." if len(line) > limit else "")


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fail_together(commands: list[Command]) -> bool:
    """For --atomic: if any ref failed, fail the others with 'atomic push failed'. True if any failed."""
    if all(c.reason is None for c in commands):
        return False
    for c in commands:
        if c.reason is None:
            c.reason = "atomic push failed"
    return True

