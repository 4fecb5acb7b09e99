"""Write one benchmark's section into docs/benchmarks.md (replacing its previous section)."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script named in its title (`make bench` runs them).\n"


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", load average {:.1f} / {:.1f} / {:.1f} when written (the machine is shared)".format(*os.getloadavg())
    return f"{platform.platform()}, {os.cpu_count()} cores {cpu}, Python {platform.python_version()}{load}"


def write_section(script: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    title = f"## {script}"
    section = f"{title}\n\n_Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}._\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(script)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def publish(script: str, lines: list[str], *, errors: list[str], note: str, write: bool) -> None:
    """Print a benchmark's section (its lines, then the errors seen and a note on reading it) and, unless told
    not to (`--no-write`), write it into docs/benchmarks.md."""
    body = "\n".join([*lines, "", "Errors: " + ("; ".join(errors) or "none") + ".", note])
    print(body)
    if write:
        write_section(script, body)
