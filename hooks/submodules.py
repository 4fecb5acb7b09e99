"""Git submodules of a pushed tree: each gitlink is fetched from the URL `.gitmodules` gives and exported in place.

A push never deploys without one of its submodules: a gitlink with no `.gitmodules` entry, a URL pushdock
will not use, or a commit that cannot be fetched rejects the push with one line naming the submodule.

The URL comes from the pushed tree, so it is untrusted, and the rules are those of webhook fetches: no
credentials of the host's are ever offered. Only network URLs (https, http, git) are fetched — not local
paths or file:// (another app's repository is on this disk), not ssh (it would use the host's keys) —
with git's own protocol allow-list, a throwaway HOME (no credential helper, no user config), no prompt
(GIT_TERMINAL_PROMPT=0), and the URL shown without any user:password it holds.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from loguru import logger

from pushdock import proc
from pushdock.errors import BuildFailed, PushdockError
from pushdock.progress import NULL, Progress

SCHEMES = ("https", "http", "git")
FETCH_TIMEOUT = 300.0  # seconds per git fetch
MAX_DEPTH = 5  # submodules of submodules...
SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")  # sha1 or sha256
USERINFO = re.compile(r"://[^/\s@]*@")  # user:password@ in a URL git printed


@dataclass(frozen=True)
class Submodule:
    path: str  # in the tree, `/`-separated
    url: str
    sha: str

    @property
    def shown(self) -> str:
        """Path and URL for a message: pushed content, so kept short; never a user:password."""
        return f"{self.path[:120]} ({shown_url(self.url)[:200]})"


def shown_url(url: str) -> str:
    """The URL without user:password (it may hold a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def parse_gitmodules(text: bytes) -> dict[str, str]:
    """`.gitmodules` -> {path: url}; BuildFailed (one line) if it cannot be read."""
    from dulwich.config import ConfigFile, parse_submodules  # noqa: PLC0415 -- start-up: dulwich loads when first used

    try:  # no [include]: the pushed file must not make pushdock read files of this host
        config = ConfigFile.from_file(io.BytesIO(text), expand_includes=False)
        return {p.decode("utf-8", "replace"): u.decode("utf-8", "replace") for p, u, _ in parse_submodules(config)}
    except (ValueError, KeyError) as e:
        raise BuildFailed(f".gitmodules cannot be read: {str(e)[:80]}") from None


def check_url(sub: Submodule) -> None:
    """BuildFailed unless `sub.url` is one pushdock fetches (see the module docstring)."""
    try:
        scheme = urlsplit(sub.url).scheme.lower()
    except ValueError:
        scheme = ""
    if any(ord(c) < 0x20 or c == "\x7f" for c in sub.url):
        why = "the URL holds control characters"
    elif sub.url.startswith(("./", "../")):
        why = "a relative URL (relative to the pushed repository, which has no network URL): use an absolute one"
    elif scheme in SCHEMES and "://" in sub.url:
        return
    elif scheme == "ssh" or re.match(r"^[\w.-]+@[\w.-]+:", sub.url):
        why = "an ssh URL (it would use this host's keys): use an https URL"
    else:
        why = "not an https, http or git URL (local paths and file:// are not fetched)"
    raise BuildFailed(f"submodule {sub.shown}: {why}")


def fetch(sub: Submodule, dest_repo: Path) -> None:
    """Fetch commit `sub.sha` of `sub.url` into the bare repository `dest_repo`; BuildFailed naming it if not.

    The URL goes into the repository's config as remote `submodule`, not on a command line: argv is logged.
    """
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    check_url(sub)
    repo = Repo(str(dest_repo))
    try:
        config = repo.get_config()
        config.set((b"remote", b"submodule"), b"url", sub.url.encode())
        config.write_to_path()
    finally:
        repo.close()
    with tempfile.TemporaryDirectory(prefix="pushdock-submodule-home-") as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", "GIT_PROTOCOL_FROM_USER": "0",
            "LC_ALL": "C",
        }
        git = ["git", "-c", "protocol.allow=never", "-c", "credential.helper=", "--git-dir", str(dest_repo)]
        for scheme in SCHEMES:
            git[1:1] = ["-c", f"protocol.{scheme}.allow=always"]
        attempts = (
            [*git, "fetch", "--quiet", "--no-tags", "--depth=1", "submodule", sub.sha],  # servers that allow it
            [*git, "fetch", "--quiet", "--no-tags", "submodule", "+refs/heads/*:refs/fetched/heads/*",
             "+refs/tags/*:refs/fetched/tags/*"],
        )
        last = ""
        for argv in attempts:
            try:
                res = proc.run(argv, check=False, env=env, timeout=FETCH_TIMEOUT)
            except PushdockError as e:  # timed out
                last = str(e)
                continue
            if _has_commit(git, env, sub.sha):
                return
            last = (res.stderr.strip().splitlines() or [""])[-1]
        logger.warning("submodule fetch failed", path=sub.path[:120], url=shown_url(sub.url)[:200],
                       error=USERINFO.sub("://", last)[:200])
        missing = not last or "couldn't find remote ref" in last  # the remote answered, without that commit
        reason = "its commit is not there" if missing else "it cannot be fetched"
        raise BuildFailed(f"submodule {sub.shown}: {reason} ({sub.sha[:7]}); the push is not deployed without it")


def _has_commit(git: list[str], env: dict[str, str], sha: str) -> bool:
    res = proc.run([*git, "cat-file", "-e", f"{sha}^{{commit}}"], check=False, env=env, timeout=30)
    return res.returncode == 0


def export_submodules(
    gitlinks: list[tuple[str, str]], gitmodules: bytes | None, dest: Path, *, depth: int,
    export_tree: Callable[..., int], progress: Progress = NULL,
) -> int:
    """Fetch and export every gitlink `(path, sha)` of a tree under `dest`; the file count. `export_tree` is
    hooks/source.py's, handed in: a submodule's tree is exported as the top one is (its own submodules too)."""
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    if depth >= MAX_DEPTH:
        raise BuildFailed(f"submodules nest deeper than {MAX_DEPTH} levels")
    urls = parse_gitmodules(gitmodules) if gitmodules is not None else {}
    count = 0
    for path, sha in gitlinks:
        if path not in urls:
            raise BuildFailed(f"submodule {path[:120]}: no entry in .gitmodules, so it cannot be fetched")
        if not SHA.match(sha):
            raise BuildFailed(f"submodule {path[:120]}: {sha[:12]!r} is not a commit id")
        sub = Submodule(path, urls[path], sha)
        progress.detail(f"Fetching submodule {sub.shown} at {sha[:7]}")
        with tempfile.TemporaryDirectory(prefix="pushdock-submodule-") as tmp:
            Repo.init_bare(tmp).close()
            fetch(sub, Path(tmp))
            target = Path(dest, *path.split("/"))
            target.mkdir(parents=True, exist_ok=True)
            if not os.path.realpath(target).startswith(os.path.realpath(dest) + os.sep):
                raise BuildFailed(f"refusing to export submodule {path!r}: it escapes the build dir")
            count += export_tree(Path(tmp), sha, target, depth=depth + 1, progress=progress)
    return count
