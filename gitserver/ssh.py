"""The SSH door: asyncssh, public-key auth against `ssh-keys`, one worker process per command.

Each exec request runs `python -m gitserver.worker` (a warm fork of serve's zygote, pushdock/zygote.py, else a
new process) with the command in SSH_ORIGINAL_COMMAND and the authenticated identity in PUSHDOCK_IDENTITY;
bytes are pumped explicitly both ways until EOF (asyncssh's `redirect()` truncated clones: research/gitserver.md
§3a). A worker outlives its client: a deploy in progress completes and its outcome is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any

from loguru import logger

from gitserver.sshlib import asyncssh
from pushdock.errors import PushdockError, internal_error
from pushdock.redact import redact_command
from pushdock.settings import as_env
from pushdock.state import atomic_write
from pushdock.zygote import PIPE, Worker, exec_worker

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Identity

CHUNK = 65536
# The command travels to the worker in SSH_ORIGINAL_COMMAND, and Linux refuses an environment string over
# 128 KiB (MAX_ARG_STRLEN: "Argument list too long"): refuse long commands here, in one line, well below it.
MAX_COMMAND = 64 * 1024
WORKER = "gitserver.worker"  # the module each exec request runs (forked warm from pushdock/zygote.py if serve runs one)
USAGE = "pushdock: no shell here; run a command: ssh pushdock@HOST help, or git push ssh://pushdock@HOST/APP\n"


def load_host_key(ctx: Context) -> asyncssh.SSHKey:
    """The server's ed25519 host key, generated (0600) on first start."""
    path = ctx.state.path("keys", "ssh_host_ed25519_key")
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="pushdock host key")
        atomic_write(path, key.export_private_key(), mode=0o600)
        atomic_write(path.with_name(path.name + ".pub"), key.export_public_key(), mode=0o644)
        logger.info("ssh host key generated", path=str(path), fingerprint=key.get_fingerprint())
    return asyncssh.read_private_key(str(path))


class _Auth(asyncssh.SSHServer):
    """Per connection: public keys only, looked up in the key store on every attempt."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.debug("ssh connection lost", error=str(exc))

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is required for every user name

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        from gitserver.keys import identity_for  # noqa: PLC0415 -- start-up: loads only when this path runs

        identity = identity_for(self.ctx, key)
        if identity is None:
            logger.info("ssh key refused", fingerprint=key.get_fingerprint())
            return False
        # asyncssh validates the key again right before checking the signature, so the identity stored
        # last is the one of the key that signed.
        assert self.conn is not None
        self.conn.set_extra_info(pushdock_identity=identity)
        return True


class SSHDoor:
    """The embedded SSH server of `pushdock serve`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.workers: set[asyncio.Task[int]] = set()
        self.per_key: Counter[str] = Counter()  # running workers by key name, and by client address
        self.per_host: Counter[str] = Counter()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> tuple[str, int]:
        """Listen on settings.ssh_host:ssh_port; return the address actually bound."""
        s = self.ctx.settings
        try:
            self._acceptor = await asyncssh.create_server(
                lambda: _Auth(self.ctx), s.ssh_host, s.ssh_port,
                server_host_keys=[load_host_key(self.ctx)], process_factory=self.handle, encoding=None,
                allow_pty=True, line_editor=False, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
                password_auth=False, kbdint_auth=False, login_timeout=30, keepalive_interval=30,
            )
        except OSError as e:
            raise PushdockError(f"cannot listen for ssh on {s.ssh_host}:{s.ssh_port}: {e.strerror or e}") from e
        return s.ssh_host, self._acceptor.get_port()

    async def close(self) -> None:
        """Stop accepting; running workers are separate processes and finish on their own."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        identity: Identity | None = process.get_extra_info("pushdock_identity")
        command = process.command
        if identity is None or process.subsystem or not command:
            with contextlib.suppress(Exception):
                process.stderr.write(USAGE.encode())
            process.exit(1)
            return
        peer = process.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        refusal = self._refusal(command, identity, host)
        if refusal:
            logger.info("ssh session refused", who=identity.name, host=host, reason=refusal)
            with contextlib.suppress(Exception):
                process.stderr.write(f"error: {refusal}\n".encode())
            process.exit(1)
            return
        # Shielded: if this session is torn down, the worker still runs to the end with its output drained.
        # It holds its place under the caps until it ends, not until its client leaves.
        task = asyncio.create_task(self._run_worker(process, command, identity))
        self.workers.add(task)
        self.per_key[identity.name] += 1
        self.per_host[host] += 1
        task.add_done_callback(lambda t: self._release(t, identity.name, host))
        try:
            rc = await asyncio.shield(task)
        except Exception:  # the worker could not even start
            line = internal_error("ssh worker failed", who=identity.name)
            with contextlib.suppress(Exception):
                process.stderr.write(f"error: {line}\n".encode())
            rc = 1
        with contextlib.suppress(Exception):  # the client may be gone: its outcome is already recorded
            process.exit(rc)

    def _refusal(self, command: str, who: Identity, host: str) -> str | None:
        """Why this session may not start (too long a command, a cap reached), or None."""
        s = self.ctx.settings
        size = len(command.encode("utf-8", "surrogateescape"))
        if size > MAX_COMMAND:
            return f"the command is too long ({size} bytes; at most {MAX_COMMAND})"
        if s.ssh_max_sessions_per_key and self.per_key[who.name] >= s.ssh_max_sessions_per_key:
            return (f"too many sessions for key {who.name}: {s.ssh_max_sessions_per_key} already running "
                    "(PUSHDOCK_SSH_MAX_SESSIONS_PER_KEY); try again when one ends")
        if s.ssh_max_sessions_per_host and self.per_host[host] >= s.ssh_max_sessions_per_host:
            return (f"too many sessions from {host}: {s.ssh_max_sessions_per_host} already running "
                    "(PUSHDOCK_SSH_MAX_SESSIONS_PER_HOST); try again when one ends")
        return None

    def _release(self, task: asyncio.Task[int], key: str, host: str) -> None:
        self.workers.discard(task)
        for counts, name in ((self.per_key, key), (self.per_host, host)):
            counts[name] -= 1
            if counts[name] <= 0:
                del counts[name]

    async def _run_worker(self, process: asyncssh.SSHServerProcess[bytes], command: str, who: Identity) -> int:
        env = {
            **os.environ, **as_env(self.ctx.settings), "SSH_ORIGINAL_COMMAND": command,
            "PUSHDOCK_IDENTITY": json.dumps({"name": who.name, "role": who.role, "apps": list(who.apps),
                                             "door": "ssh"}),
        }
        logger.info("ssh command", who=who.name, command=redact_command(command)[:200])
        feed = None
        if process.get_terminal_type() is not None:  # `ssh -t`: the worker runs on a terminal (`run APP bash`)
            from gitserver.ssh_pty import run_on_pty  # noqa: PLC0415 -- start-up: loads only when this path runs

            worker, pump = await run_on_pty(process, WORKER, env)
            pumps: list[Any] = [pump]
        else:
            # a session of its own: a Ctrl-C of `serve` must not kill a deploy in progress
            worker = await exec_worker(WORKER, env, stdin=PIPE, stdout=PIPE, stderr=PIPE)
            assert worker.stdin and worker.stdout and worker.stderr
            feed = asyncio.create_task(_feed(process.stdin, worker.stdin))
            pumps = [_drain(worker.stdout, process.stdout), _drain(worker.stderr, process.stderr)]
        # A follower (`logs -t`) or a one-off session (`run`) has nothing to finish: it ends when its client
        # leaves. Anything that changes state (a push, config:set) runs to the end so its outcome is recorded.
        hangup = asyncio.create_task(_hang_up(process, worker)) if _ends_with_client(command) else None
        await asyncio.gather(*pumps)
        rc = await worker.wait()
        for task in (feed, hangup):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        logger.info("ssh command done", who=who.name, rc=rc)
        return rc


def _ends_with_client(command: str) -> bool:
    words = command.split()
    return bool(words) and words[0] in ("logs", "run", "enter")


async def _hang_up(process: asyncssh.SSHServerProcess[bytes], worker: Worker) -> None:
    """When the client's channel closes, stop the worker (SIGTERM to its session)."""
    with contextlib.suppress(Exception):
        await process.channel.wait_closed()
    if worker.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)


async def _feed(src: asyncssh.SSHReader[bytes], dst: asyncio.StreamWriter) -> None:
    """Client -> worker stdin; on the client's EOF or disappearance, close the worker's stdin."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
    except Exception as e:  # connection lost, break or signal from the client: the input is over
        logger.debug("ssh input ended", error=repr(e))
    finally:
        with contextlib.suppress(OSError):
            dst.close()


async def _drain(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[Any]) -> None:
    """Worker output -> client, until the worker closes it; keep draining (discarding) once the client is gone."""
    client = True
    while data := await src.read(CHUNK):
        if not client:
            continue
        try:
            dst.write(data)
            await dst.drain()
        except Exception as e:  # the channel is closed: the worker must still be able to finish
            logger.debug("ssh client gone; draining worker output", error=repr(e))
            client = False
