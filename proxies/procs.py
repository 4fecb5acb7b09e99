"""The proxies' daemons as seen from /proc: is a pid alive (not a zombie), what is its command line."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    st = stat(pid)
    return st is not None and st[0] != "Z"


def pid_from(pidfile: Path, *, marker: str) -> int | None:
    """The live pid written in `pidfile` whose command line contains `marker` (our config file), or None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) and marker in cmdline(pid) else None


def wait(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log file, on one line (for an error message)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return " | ".join(ln.strip()[:300] for ln in text.splitlines()[-lines:] if ln.strip())
