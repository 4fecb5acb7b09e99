"""pushdock/zygote.py without serve: a real zygote process, a probe module as the worker (tests/fixtures)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pushdock import zygote

PROBE = "tests.fixtures.zygote_probe"


@pytest.fixture
def warm() -> Iterator[zygote.Zygote]:
    z = zygote.Zygote.start([PROBE], os.environ)
    zygote.install(z)
    try:
        yield z
    finally:
        zygote.install(None)
        z.stop()


async def run_probe(data: bytes, **env: str) -> tuple[Any, dict[str, Any], bytes, int]:
    worker = await zygote.exec_worker(PROBE, {**os.environ, **env}, stdin=zygote.PIPE, stdout=zygote.PIPE,
                                      stderr=zygote.PIPE)
    assert worker.stdin is not None and worker.stdout is not None and worker.stderr is not None
    worker.stdin.write(data)
    worker.stdin.close()  # EOF
    out, err = await asyncio.gather(worker.stdout.read(), worker.stderr.read())
    return worker, json.loads(out), err, await worker.wait()


def test_a_forked_child_gets_its_stdio_environment_session_and_status(warm: zygote.Zygote) -> None:
    worker, seen, err, rc = asyncio.run(run_probe(b"input\n" * 1000, PROBE="one", PROBE_RC="7"))
    assert isinstance(worker, zygote.WarmProcess)
    assert rc == 7 and worker.returncode == 7
    assert seen["stdin"] == "input\n" * 1000 and seen["probe"] == "one" and err == b"to stderr\n"
    assert seen["sid"] == seen["pid"] == worker.pid  # a session leader: killpg(pid) reaches all it starts
    assert seen["argv0"].endswith("zygote_probe.py")
    _, again, _, rc = asyncio.run(run_probe(b"", PROBE="two"))
    assert rc == 0 and again["probe"] == "two" and again["pid"] != seen["pid"]  # nothing of the last request stays


def test_a_signal_is_the_exit_status_as_asyncio_reports_it(warm: zygote.Zygote) -> None:
    async def killed() -> int:
        worker = await zygote.exec_worker(PROBE, os.environ, stdin=zygote.PIPE, stdout=zygote.DEVNULL,
                                          stderr=zygote.DEVNULL)
        os.killpg(worker.pid, signal.SIGTERM)  # what the SSH door's hang-up does
        return await worker.wait()

    assert asyncio.run(killed()) == -signal.SIGTERM


def test_without_the_zygote_workers_are_spawned(warm: zygote.Zygote) -> None:
    os.kill(warm.process.pid, signal.SIGKILL)
    warm.process.wait()
    worker, seen, _, rc = asyncio.run(run_probe(b"x", PROBE="spawned", PROBE_RC="3"))
    assert not isinstance(worker, zygote.WarmProcess) and warm.dead
    assert (rc, seen["stdin"], seen["probe"]) == (3, "x", "spawned")
