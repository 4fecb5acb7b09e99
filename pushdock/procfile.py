"""The Procfile: `type: command` lines, parsed once per build (by the pipeline, before the builder runs)."""

from __future__ import annotations

import re
from pathlib import Path

from pushdock import pushed
from pushdock.errors import UsageError

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
MAX_PROCFILE = 64 * 1024


def parse_procfile(text: str) -> dict[str, str]:
    """Procfile lines `type: command` (comments and blank lines ignored); UsageError on a bad line."""
    processes: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = PROCFILE_LINE.match(line)
        if not m:
            raise UsageError(f"Procfile line {n} is not 'type: command': {pushed.excerpt(line)!r}")
        name, command = m.group(1).lower(), m.group(2).strip()
        if name in processes:
            raise UsageError(f"Procfile line {n}: process type {name!r} is defined twice")
        processes[name] = command
    return processes


def read_procfile(build_dir: Path) -> dict[str, str]:
    """The tree's Procfile, parsed ({} without one); a Procfile that links out of the tree is refused."""
    text = pushed.read_text(build_dir, "Procfile", limit=MAX_PROCFILE)
    return {} if text is None else parse_procfile(text)
