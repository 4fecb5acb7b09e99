"""The lines shown when an instance dies during the checks: meaningful ones, stderr first, bounded."""

from __future__ import annotations

from schedulers.crash_output import SHOWN, WIDTH, last_lines

TRACE = ["/app/server.js:3", "const express = require('expresss');", "",
         "Error: Cannot find module 'expresss'", "    at Module._resolveFilename (node:internal/modules/cjs/loader:1145:15)",
         "    at Object.<anonymous> (/app/server.js:3:17) {", "  code: 'MODULE_NOT_FOUND'", "}", ""]
NPM = ["npm notice", "npm notice New major version of npm available! 9.8.1 -> 10.8.2",
       "npm notice Changelog: https://github.com/npm/cli/releases/tag/v10.8.2",
       "npm notice Run npm install -g npm@10.8.2 to update!", "npm notice", "",
       "npm ERR! A complete log of this run can be found in: /root/.npm/_logs/x-debug-0.log",
       "npm WARN config production Use `--omit=dev` instead.", "\x1b[33mnpm\x1b[39m \x1b[33mwarn\x1b[39m deprecated", ""]


def test_the_stack_trace_not_npm_notices() -> None:
    shown = last_lines(TRACE + NPM, ["> app@1.0.0 start", "> node server.js"])
    assert "Error: Cannot find module 'expresss'" in shown
    assert not any("npm" in line or not line.strip() for line in shown), shown
    assert len(shown) == SHOWN and shown[-1] == "}"


def test_stderr_first_then_stdout_and_bounded() -> None:
    assert last_lines(["boom"], ["started", "", "listening"]) == ["started", "listening", "boom"]
    assert last_lines([], ["only stdout"]) == ["only stdout"]
    many = [f"err {i}" for i in range(50)]
    assert last_lines(many, ["out"], n=3) == ["err 47", "err 48", "err 49"]
    long = last_lines(["x" * 5000], [])
    assert len(long[0]) == WIDTH and long[0].endswith("...")
