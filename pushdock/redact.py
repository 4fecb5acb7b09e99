"""Remove secret values from command lines before they reach a log, an event or a commit message."""

from __future__ import annotations

import re
import shlex

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=.*", re.S)
SECRET_WORDS = frozenset({"secret", "token", "password", "key"})
MASK = "***"


def redact_argv(argv: list[str]) -> list[str]:
    """`config:set app A=1 B=2` -> `config:set app A=*** B=***`; the word after `secret`/`token` is masked."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
        elif m := ASSIGNMENT.match(word):
            out.append(f"{m.group(1)}={MASK}")
        else:
            out.append(word)
            hide_next = word.lower() in SECRET_WORDS
    return out


def redact_command(command: str) -> str:
    try:
        argv = shlex.split(command)
    except ValueError:
        return command.split(" ", 1)[0] + " " + MASK
    return shlex.join(redact_argv(argv))
