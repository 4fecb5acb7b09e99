"""How a Procfile or deploy-task command line becomes a container's command (what Dokku and Heroku do).

- An image without an ENTRYPOINT of its own (a Dockerfile image with only a CMD, or a buildpack image,
  whose `/start` / CNB launcher sets up the environment and then execs its arguments): the line runs
  through `/bin/sh -c`, so `$PORT` and other shell syntax work, and a single command is prefixed with
  `exec`, so it *replaces* the shell: the app is the container's main process under the init and
  receives SIGTERM itself (graceful shutdown), and the container runs one process, not `sh` plus a child.
  A line the shell must keep running (`a && b`, pipes, `;`, a builtin first) keeps the shell; the init
  then signals the whole process group (TINI_KILL_PROCESS_GROUP), as every process of a dyno is signalled.
- A Dockerfile image with an ENTRYPOINT: the line is split into words (shell quoting rules, no
  expansion) and passed to the entrypoint as its arguments, as Dokku does; an entrypoint that wants
  shell syntax runs `sh -c "$*"` itself, or the Procfile says `sh -c '...'`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from pushdock.errors import PushdockError

# Builders whose image entrypoint takes a command line to exec (herokuish `/start`, the CNB launcher):
# their ENTRYPOINT is the platform's, not the app's.
PLATFORM_ENTRYPOINT_BUILDERS = frozenset({"herokuish", "pack"})
# A first word `exec` cannot replace the shell with: keywords and builtins (no program of that name runs).
SHELL_WORDS = frozenset({
    "!", "{", "}", "[[", "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case",
    "esac", "function", "select", "time", "coproc", "exec", "eval", ".", "source", ":", "cd", "export",
    "set", "unset", "shift", "trap", "ulimit", "umask", "alias", "readonly", "local", "declare", "typeset",
    "return", "exit", "break", "continue", "wait", "read", "builtin", "command", "hash", "type", "jobs",
    "bg", "fg", "getopts", "let", "times",
})
_REDIRECT = re.compile(r"<>|[<>]{1,2}[&|]?")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# Leading `NAME=value` words of the original text (quoted values included): `exec` goes after them.
_LEADING_ASSIGNMENTS = re.compile(
    r"""\s*(?:[A-Za-z_][A-Za-z0-9_]*=(?:[^\s'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")*\s+)*"""
)


def exec_line(line: str) -> str:
    """`line` with `exec` before its command when it is one simple command; otherwise `line` unchanged."""
    if "\n" in line or "`" in line:
        return line
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell reports it in its own words
        return line
    if any(_separates(t) for t in tokens):
        return line
    words = [t for t in tokens if not _ASSIGNMENT.match(t)]
    if not words or words[0] in SHELL_WORDS:
        return line
    lead = _LEADING_ASSIGNMENTS.match(line)
    at = lead.end() if lead else 0
    return f"{line[:at]}exec {line[at:]}"


def _separates(token: str) -> bool:
    """A control operator or grouping (`;` `&&` `||` `|` `&` `(`...): more than one simple command."""
    if not token or any(c not in "();<>|&" for c in token):
        return False
    redirect = _REDIRECT.match(token)  # `>`, `>>`, `>&`, `<&`, `>|`... (a fd number is a word before it)
    return redirect is None or redirect.end() < len(token)


def image_entrypoint(config: dict[str, Any]) -> tuple[str, ...]:
    """The app's own ENTRYPOINT from an image's inspected `Config`; () for none or a builder's own."""
    labels = config.get("Labels") or {}
    if labels.get("pushdock.builder") in PLATFORM_ENTRYPOINT_BUILDERS:
        return ()
    return tuple(str(part) for part in config.get("Entrypoint") or ())


def command_argv(line: str, entrypoint: Sequence[str] = ()) -> list[str]:
    """The container command for command line `line` (see the module docstring)."""
    if entrypoint:
        try:
            return shlex.split(line)
        except ValueError as e:
            raise PushdockError(f"cannot split the command {line[:60]!r} into arguments for the image's "
                                f"ENTRYPOINT: {e}") from None
    return ["/bin/sh", "-c", exec_line(line)]
