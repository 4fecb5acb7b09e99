"""serve's resident memory (issue 22: ≤ 100 MB with 500 apps; bench/density.py measures it): what serve
loads at start and what it hands back. The figures are the benchmark's; these guard the mechanisms."""

from __future__ import annotations

import ctypes
import subprocess
import sys

from gitserver import serve
from tests.harness import ROOT

SERVE_MODULES = ("gitserver.serve", "gitserver.ssh", "gitserver.http", "gitserver.reconcile", "web.door", "web.app",
                 "web.api", "web.dashboard", "hooks.pipeline")


def test_serve_start_leaves_git_objects_and_templates_unloaded() -> None:
    """dulwich's object store (~4 MB) loads in the workers that read repositories; jinja2 at the first page."""
    code = ("import sys\n"
            f"for m in {SERVE_MODULES!r}: __import__(m)\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'dulwich', 'jinja2'})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_trimming_hands_free_heap_pages_back() -> None:
    """What the timer's `pushdock:trim-memory` job does: after a burst of small allocations is freed, RSS drops."""
    code = ("import ctypes, gc\n"
            "from gitserver import serve\n"
            "def rss():\n"
            "    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
            "pairs = [(bytearray(1000), bytearray(20_000)) for _ in range(2_000)]\n"  # past pymalloc: glibc's heap
            "keep = [a for a, _ in pairs]\n"
            "del pairs; gc.collect()\n"  # the 20 kB halves freed between live chunks: not at the heap's top
            "before = rss(); serve._trim_memory(); print(before - rss())\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(res.stdout) > 10_000  # KiB


def test_arena_limit_is_a_glibc_call_that_succeeds() -> None:
    libc = ctypes.CDLL(None)
    assert libc.mallopt(serve.M_ARENA_MAX, 2) == 1  # glibc returns 1 on success
    serve._few_malloc_arenas()
