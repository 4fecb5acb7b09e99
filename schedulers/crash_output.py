"""What a failed instance's last log lines show: the meaningful ones, stderr first, bounded.

A process that exits during the checks usually says why on stderr (a stack trace, an error), and
package managers then bury it under their own chatter (`npm notice New major version...`, `npm warn`,
a pointer to their log file, blank lines). The pusher sees the last lines that say something: those of
stderr first, then stdout's if stderr has too few, each cut to a readable length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHOWN = 8  # lines at most
TAIL = 200  # lines read from each stream to find them
WIDTH = 300  # characters kept of one line
# Chatter that never explains a crash. npm 7+ says `npm warn` / `npm error`, older ones `npm WARN` / `npm ERR!`.
NOISE = re.compile(
    r"""^\s*(?:
        $                                                   # blank
      | npm\s+(?:notice|warn|WARN)\b                        # npm's notices and warnings
      | npm\s+(?:ERR!|error)\s*$                            # npm's empty error lines
      | npm\s+(?:ERR!|error)\s+(?:A\ complete\ log\ of\ this\ run|\S*/_logs/)  # where npm's own log is
      | yarn\s+(?:warning|info)\b                           # yarn's
      | info\s+Visit\s+https://yarnpkg\.com                 # yarn's pointer to its docs
    )""",
    re.VERBOSE,
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def meaningful(lines: Iterable[str]) -> list[str]:
    """`lines` without colour codes, trailing whitespace and noise."""
    out = []
    for raw in lines:
        line = ANSI.sub("", raw).rstrip()
        if not NOISE.match(line):
            out.append(line if len(line) <= WIDTH else line[:WIDTH - 3] + "...")
    return out


def last_lines(stderr: Iterable[str], stdout: Iterable[str], n: int = SHOWN) -> list[str]:
    """The last `n` meaningful lines: stderr's, topped up with stdout's (shown first) if stderr has fewer."""
    err = meaningful(stderr)[-n:]
    if len(err) >= n:
        return err
    out = meaningful(stdout)[-(n - len(err)):] if n > len(err) else []
    return out + err
