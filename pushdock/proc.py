"""The one door to external programs: argv lists only, never a shell."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from pushdock.errors import PushdockError

DEVNULL = subprocess.DEVNULL


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def display(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 600,
) -> Result:
    """Run a program to completion and capture its output; raise PushdockError on failure if `check`."""
    argv = [str(a) for a in argv]
    logger.debug("run", argv=display(argv))
    try:
        cp = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise PushdockError(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise PushdockError(f"{display(argv)} timed out after {timeout:.0f}s") from e
    res = Result(tuple(argv), cp.returncode, cp.stdout, cp.stderr)
    if check and cp.returncode != 0:
        last = (cp.stderr.strip() or cp.stdout.strip()).splitlines()[-1:] or [""]
        raise PushdockError(f"{argv[0]} exited {cp.returncode}: {last[0]}")
    return res


def stream(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> int:
    """Run a program, handing each line of its merged stdout/stderr to `on_line`; return its exit code."""
    argv = [str(a) for a in argv]
    logger.debug("stream", argv=display(argv))
    try:
        p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, text=True, errors="replace", bufsize=1,
        )
    except FileNotFoundError as e:
        raise PushdockError(f"{argv[0]} is not installed") from e
    assert p.stdout is not None
    with p:
        for line in p.stdout:
            on_line(line.rstrip("\n"))
        return p.wait(timeout=timeout)


Process = subprocess.Popen  # what popen returns: callers annotate with it instead of importing subprocess


def popen(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """A raw child: the SSH door's workers (pipes, bytes in and out), the proxies' daemons (sockets passed)."""
    argv = [str(a) for a in argv]
    return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]
