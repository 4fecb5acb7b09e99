"""Regenerate docs/commands.md from the command registry (run after adding commands)."""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings

HEAD = """# Commands

The same registry serves `pushdock CMD ARGS` on the host (root is admin) and
`ssh -p 2222 pushdock@HOST CMD ARGS` (the key's role decides). Names follow Dokku (`plugin:verb APP ...`);
`plugin verb` works too. Exit status 0 on success; on failure one `error: ...` line on stderr and a
non-zero status (2 bad input, 13 forbidden, 1 otherwise). Listing and report commands accept `--format json`.
Every command that changes something is recorded in `events`.

| command | what it does |
|---|---|
"""
TAIL = """
Roles: an `admin` key runs every command; a `deployer` key (`ssh-keys:add NAME --role deployer --apps a,b`)
may push to and run app commands on its listed apps only; `apps:create|destroy|rename|clone`, `ssh-keys:*`,
`tokens:*`, `plugin:*`, `logs:set` and `stack:build` are admin-only. `serve` and `service:*` run on the host only.
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(settings=Settings(data_dir=Path(tmp)))
        out = io.StringIO()
        dispatch(["help"], ctx, out, io.StringIO())
        rows = []
        for name, short in re.findall(r"^  ([a-z][a-z0-9-]*(?::[a-z0-9-]+)?)  +(.*)$", out.getvalue(), re.M):
            o = io.StringIO()
            dispatch([name, "--help"], ctx, o, io.StringIO())
            m = re.search(r"Usage: pushdock (.*)", o.getvalue())
            usage = m.group(1).strip() if m else name
            if ":" in name:
                usage = usage.replace(name.replace(":", " "), name, 1)
            rows.append(f"| `{usage}` | {short.strip()} |")
    Path(__file__).resolve().parents[1].joinpath("docs", "commands.md").write_text(HEAD + "\n".join(rows) + "\n" + TAIL)


if __name__ == "__main__":
    main()
