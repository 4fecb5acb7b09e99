"""One SSH command per process: `git-receive-pack` / `git-upload-pack` or an admin command.

Run as `python -m gitserver.worker` with the command line in SSH_ORIGINAL_COMMAND and the caller in
PUSHDOCK_IDENTITY (JSON: name, role, apps, door). The embedded SSH server spawns it per exec request;
the same entry point works as an OpenSSH forced command. For git commands stdout IS the protocol:
nothing else may be written there, so logs go to a file only.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import sys
import time
from typing import IO, TYPE_CHECKING, TextIO

from pushdock.errors import Conflict, Forbidden, PushdockError, UsageError, internal_error
from pushdock.log import logger

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Identity

# What run() imports lazily, imported once by serve's zygote (pushdock/zygote.py) so warm workers start ready.
WARM = (
    "pushdock.context", "pushdock.settings", "pushdock.state", "pushdock.log", "loguru", "pushdock.cli",
    "pushdock.bus", "pushdock.apps", "pushdock.commands", "pushdock.migrations", "pushdock.redact",
    "pushdock.plugins", "pushdock.attach", "pushdock.datastore", "pushdock.routing", "pushdock.scheduler",
    "dulwich.protocol", "dulwich.server", "dulwich.errors", "gitserver.backend",
    "gitserver.receive",
)
GIT_COMMANDS = ("git-receive-pack", "git-upload-pack")
ACTIONS = {"git-upload-pack": "git:fetch", "git-receive-pack": "git:push"}  # as the HTTP door names them
FATAL = 128  # what git's own server commands exit with


def identity_from_env(raw: str | None) -> Identity:
    """The caller, as the SSH server authenticated it."""
    from pushdock.state import Identity  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path

    if not raw:
        raise PushdockError("no identity: this worker must be started by `pushdock serve`")
    try:
        data = json.loads(raw)
        return Identity(name=str(data["name"]), role=str(data["role"]), apps=tuple(data.get("apps", ())),
                        door=str(data.get("door", "ssh")))
    except (ValueError, KeyError, TypeError) as e:
        raise PushdockError("malformed PUSHDOCK_IDENTITY") from e


def serve_git(ctx: Context, argv: list[str], inp: IO[bytes], out: IO[bytes]) -> None:
    """Run one git command for `ctx.identity` over inp/out; PushdockError for anything the caller may not do."""
    from dulwich.protocol import Protocol  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.server import UploadPackHandler  # noqa: PLC0415 -- start-up: dulwich loads when first used

    from gitserver.backend import AppBackend, app_from_path  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path
    from gitserver.receive import PushdockReceivePack  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path
    from pushdock.apps import authorize, create_app  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path

    if len(argv) != 2:
        raise UsageError(f"usage: {argv[0]} APP")
    app = app_from_path(argv[1])
    authorize(ctx, app)
    if argv[0] == "git-receive-pack":
        if not ctx.state.app_exists(app):  # the first push creates the app
            try:
                create_app(ctx, app)
                logger.info("app created by first push", app=app, who=ctx.identity.name)
            except Conflict:
                pass  # a concurrent first push won the race
        handler_cls: type = PushdockReceivePack
    else:
        ctx.state.require_app(app)
        handler_cls = UploadPackHandler

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    handler = handler_cls(AppBackend(ctx), [argv[1]], Protocol(inp.read, write))
    handler.detach = True  # this process ends with the command: deferred deploy work forks off
    try:
        handler.handle()
    finally:
        handler.repo.close()


def run(command: str, ctx: Context, stdin: IO[bytes], stdout: TextIO, stderr: TextIO) -> int:
    """Dispatch one SSH command line; every error ends here as a message and an exit status."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        stderr.write(f"error: cannot parse the command: {e}\n")
        return 2
    if argv and argv[0] in GIT_COMMANDS:
        from dulwich.errors import GitProtocolError, HangupException, NotGitRepository  # noqa: PLC0415 -- start-up: dulwich loads when first used

        started = time.time()
        try:
            serve_git(ctx, argv, stdin, stdout.buffer)
            if argv[0] == "git-upload-pack":  # a push records one event per ref itself (receive.py)
                _git_event(ctx, argv, started)
            return 0
        except (PushdockError, NotGitRepository) as e:
            stderr.write(f"fatal: {e}\n")
            _git_event(ctx, argv, started, result="denied" if isinstance(e, Forbidden) else "failed", reason=str(e))
            return FATAL
        except HangupException:
            logger.info("client hung up", command=argv[0], who=ctx.identity.name)
            if argv[0] == "git-receive-pack":  # (`git ls-remote` hangs up an upload-pack on purpose)
                _git_event(ctx, argv, started, result="failed", reason="the client hung up")
            return FATAL
        except GitProtocolError as e:  # a malformed request: one line, like C git's "protocol error"
            message = " ".join(str(e).split())[:200]
            stderr.write(f"fatal: protocol error: {message}\n")
            _git_event(ctx, argv, started, result="failed", reason=f"protocol error: {message}")
            return FATAL
        except Exception:
            stderr.write(f"fatal: {internal_error('git command crashed', command=argv[0])}\n")
            return FATAL
    from pushdock.cli import dispatch  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path

    return dispatch(argv, ctx, stdout, stderr)


def _git_event(ctx: Context, argv: list[str], started: float, **fields: str) -> None:
    """One audit event of a git command over SSH: clones and fetches, and refused or broken-off pushes."""
    from gitserver.backend import app_from_path  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path

    try:
        app: str | None = app_from_path(argv[1]) if len(argv) == 2 else None
    except PushdockError:
        app = None
    try:
        ctx.event(ACTIONS[argv[0]], app=app, started=started, **fields)
    except OSError as e:
        logger.error("git event not recorded", command=argv[0], error=repr(e))


def main() -> int:
    from pushdock import log  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path
    from pushdock.context import Context, load_settings  # noqa: PLC0415 -- start-up: one worker per SSH request; this loads only on its path

    try:
        settings = load_settings()
        ctx = Context(settings=settings, identity=identity_from_env(os.environ.get("PUSHDOCK_IDENTITY")))
        # One command per process: who and door go on every record the process writes.
        log.configure(settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=False,
                      extra={"who": ctx.identity.name, "door": ctx.identity.door})
    except Exception as e:  # no context, no log file: say what we can
        sys.stderr.write(f"fatal: {e}\n")
        return FATAL
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    try:
        return run(command, ctx, sys.stdin.buffer, sys.stdout, sys.stderr)
    except Exception:
        sys.stderr.write(f"error: {internal_error('worker crashed')}\n")
        return 1
    finally:
        try:
            sys.stdout.flush()
        except OSError:
            pass
        # what a session costs (docs/resources.md): the command's first word only, never its arguments
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        logger.info("worker done", command=(command.split() or ["-"])[0][:40], peak_rss_kib=peak)


if __name__ == "__main__":
    raise SystemExit(main())
