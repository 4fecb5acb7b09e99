"""Claim: no user text reaches a shell. Every program runs through pushdock.proc with an argv list."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pushdock", "gitserver", "hooks", "builders", "schedulers", "proxies")


def sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def test_no_shell_true_or_os_system() -> None:
    bad = [str(p.relative_to(ROOT)) for p in sources()
           if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", p.read_text())]
    assert bad == []


def test_subprocess_only_in_proc() -> None:
    users = [str(p.relative_to(ROOT)) for p in sources()
             if re.search(r"^\s*(import subprocess|from subprocess import)", p.read_text(), re.M)]
    assert users == ["pushdock/proc.py"]
