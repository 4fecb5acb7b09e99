"""Run a command of the one registry for an API caller, in a worker process (web/worker.py): a warm fork of serve's
zygote (pushdock/zygote.py), else a new process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.settings import as_env
from pushdock.zygote import DEVNULL, PIPE, STDOUT, exec_worker

if TYPE_CHECKING:
    from pushdock.settings import Settings
    from pushdock.state import Identity


WORKER = "web.worker"


@dataclass(frozen=True)
class Outcome:
    status: int  # the HTTP status: 200, or the error's (403 refused by the role rules, 404, 409, 400, 500)
    out: str
    error: str  # the one-line message, without its `error: ` prefix

    def json(self) -> Any:
        return json.loads(self.out) if self.out.strip() else None


def _env(settings: Settings, identity: Identity, argv: list[str], **extra: str) -> dict[str, str]:
    return {**os.environ, **as_env(settings), "PUSHDOCK_ARGV": json.dumps(argv), **extra,
            "PUSHDOCK_IDENTITY": json.dumps({"name": identity.name, "role": identity.role,
                                             "apps": list(identity.apps), "door": "http"})}


async def stream_command(settings: Settings, identity: Identity, argv: list[str]) -> AsyncIterator[str]:
    """The output lines of a command that follows something (`logs APP -t`), until it ends or the caller stops
    iterating (the worker is then killed); an error ends the stream with its `error:` line."""
    worker = await exec_worker(WORKER, _env(settings, identity, argv, PUSHDOCK_STREAM="1"), stdin=DEVNULL,
                               stdout=PIPE, stderr=STDOUT, new_session=False)
    assert worker.stdout is not None
    try:
        while line := await worker.stdout.readline():
            yield line.decode(errors="replace").rstrip("\n")
    finally:
        if worker.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            await worker.wait()


async def run_command(settings: Settings, identity: Identity, argv: list[str]) -> Outcome:
    """`argv` as `identity` (door http): its output, or its one-line error and the status that goes with it."""
    env = _env(settings, identity, argv)
    worker = await exec_worker(WORKER, env, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, new_session=False)
    assert worker.stdout is not None and worker.stderr is not None
    stdout, stderr = await asyncio.gather(worker.stdout.read(), worker.stderr.read())
    await worker.wait()
    try:
        answer = json.loads(stdout)
    except ValueError:
        first = (stderr.decode(errors="replace").strip().splitlines() or ["the command worker failed"])[-1]
        return Outcome(500, "", first[:300])
    message = answer["error"].splitlines()[0] if answer["error"] else ""
    return Outcome(int(answer["status"]), answer["out"], message.removeprefix("error: "))
