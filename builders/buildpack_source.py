"""Buildpack references (`.buildpacks` lines, BUILDPACK_URL, `buildpacks:add`) and where they come from.

A reference is one of:
- a git URL, `https://`, `http://`, `git://`, `ssh://`, `file://` or scp-like `user@host:path`, with an
  optional `#ref` (branch, tag or commit): fetched with dulwich, cached under DATA_DIR/buildpacks by commit;
- `heroku/NAME`: short for https://github.com/heroku/heroku-buildpack-NAME.git (as Dokku reads it);
- `pushdock/NAME`: one of the buildpacks shipped in builders/buildpacks/;
- a folder: `./path` inside the pushed repository, or an absolute path on this host.

Local sources (`file://` URLs and absolute paths) are read by the server itself, so a pusher who is not
an admin may only name the repositories of apps they may use (DATA_DIR/repos/APP.git).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from loguru import logger

from hooks.source import export_tree
from pushdock.errors import BuildFailed, UsageError

if TYPE_CHECKING:
    from dulwich.client import GitClient
    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

    from pushdock.context import Context
    from pushdock.progress import Progress

SHIPPED_DIR = Path(__file__).resolve().parent / "buildpacks"
URL_SCHEMES = ("https", "http", "git", "ssh", "git+ssh", "file")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)\S+$")
SHORTHAND = re.compile(r"^(heroku|pushdock)/([a-z0-9][a-z0-9._-]*)$")
TARBALL = re.compile(r"\.(tgz|tar\.gz|tbz|tar\.bz2|tar|zip)$")
HEX = re.compile(r"^[0-9a-f]{7,40}$")
FETCH_TIMEOUT = 120  # seconds an HTTP git server may stay silent


@dataclass(frozen=True)
class BuildpackRef:
    """One buildpack as the user named it."""

    kind: str  # git | shipped | folder (inside the pushed tree) | host (absolute path on this host)
    location: str  # the URL, the shipped name, or the path
    ref: str = ""  # git only: branch, tag or commit after `#`
    text: str = ""  # what the user wrote

    @property
    def display(self) -> str:
        """What the user wrote, without credentials (`https://user:token@host/...` -> `https://***@host/...`)."""
        return hide_credentials(self.text or self.location)

    @property
    def name(self) -> str:
        """A short display name: the shipped name, or the last part of the URL or path."""
        tail = self.location.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        return tail.removeprefix("heroku-buildpack-") or self.location


def hide_credentials(url: str) -> str:
    return re.sub(r"([A-Za-z+]+://)[^/@\s]*@", r"\1***@", url)


def parse_buildpack(text: str) -> BuildpackRef:
    """Parse one reference; UsageError (one line) when it is not a URL, shorthand or folder."""
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw) or "\0" in raw:
        raise UsageError(f"not a buildpack URL or folder: {hide_credentials(raw)!r}")
    m = SHORTHAND.match(raw)
    if m:
        owner, name = m.groups()
        if owner == "pushdock":
            if not (SHIPPED_DIR / name / "bin" / "compile").is_file():
                shipped = ", ".join(f"pushdock/{n}" for n in shipped_names())
                raise UsageError(f"no shipped buildpack {raw!r}: use one of {shipped}")
            return BuildpackRef("shipped", name, text=raw)
        return BuildpackRef("git", f"https://github.com/heroku/heroku-buildpack-{name}.git", text=raw)
    if raw.startswith(("./", "/")):
        return _folder(raw)
    url, _, ref = raw.partition("#")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in URL_SCHEMES or (not scheme and SCP_LIKE.match(url)):
        if TARBALL.search(url):
            raise UsageError(f"buildpack {hide_credentials(raw)!r} is an archive: give a git URL or a folder")
        if scheme in ("http", "https", "git", "ssh", "git+ssh") and not urlsplit(url).hostname:
            raise UsageError(f"buildpack URL {hide_credentials(raw)!r} has no host")
        if "#" in ref or (ref and not re.match(r"^[A-Za-z0-9._/-]+$", ref)):
            raise UsageError(f"buildpack URL {hide_credentials(raw)!r} has a bad #ref: use a branch, tag or commit")
        return BuildpackRef("git", url, ref=ref, text=raw)
    raise UsageError(
        f"not a buildpack URL or folder: {hide_credentials(raw)!r} (give a git URL, ./folder or pushdock/NAME)"
    )


def _folder(raw: str) -> BuildpackRef:
    if raw.startswith("/"):
        return BuildpackRef("host", os.path.normpath(raw), text=raw)
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if not parts or ".." in parts:
        raise UsageError(f"buildpack folder {raw!r} must be a folder inside the repository")
    return BuildpackRef("folder", "/".join(parts), text=raw)


def parse_lines(text: str, origin: str) -> list[BuildpackRef]:
    """The references of a `.buildpacks` file (comments and blank lines skipped); BuildFailed naming the line."""
    refs = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            refs.append(parse_buildpack(stripped))
        except UsageError as e:
            raise BuildFailed(f"{origin} line {n}: {e.message}") from None
    return refs


def shipped_names() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "bin" / "compile").is_file())


# -- resolving a reference to a folder on this host -----------------------------------------------------
def resolve(ctx: Context, ref: BuildpackRef, build_dir: Path, progress: Progress) -> Path:
    """The host folder holding the buildpack's bin/; git URLs are fetched (or found in the cache by commit)."""
    if ref.kind == "shipped":
        return SHIPPED_DIR / ref.location
    if ref.kind == "folder":
        root = build_dir.resolve()
        path = (root / ref.location).resolve()
        if not path.is_relative_to(root):
            raise BuildFailed(f"buildpack folder {ref.display!r} leaves the repository")
        return _checked(path, ref)
    if ref.kind == "host":
        return _checked(_allowed_local(ctx, Path(ref.location), ref), ref)
    return fetch_git(ctx, ref, progress)


def _checked(path: Path, ref: BuildpackRef) -> Path:
    if not (path / "bin" / "compile").is_file():
        raise BuildFailed(f"buildpack {ref.display!r} has no bin/compile")
    return path


def _allowed_local(ctx: Context, path: Path, ref: BuildpackRef) -> Path:
    """A path on this host the pusher may read: anything for admins, else their apps' repositories."""
    real = path.resolve()
    if ctx.identity.role == "admin":
        return real
    repos = ctx.state.repos_dir.resolve()
    if real.is_relative_to(repos):
        top = real.relative_to(repos).parts[:1]
        if top and top[0].endswith(".git") and ctx.identity.may_use(top[0][:-4]):
            return real
    raise BuildFailed(f"buildpack {ref.display!r}: only admins may use paths on the server outside their apps")


def fetch_git(ctx: Context, ref: BuildpackRef, progress: Progress) -> Path:
    """The buildpack at `ref` (default: the remote HEAD), exported under DATA_DIR/buildpacks/<url>/<commit>."""
    from dulwich.client import default_urllib3_manager, get_transport_and_path  # noqa: PLC0415 -- start-up: dulwich loads when first used

    url = ref.location
    if urlsplit(url).scheme == "file":
        url = str(_allowed_local(ctx, Path(unquote(urlsplit(url).path)), ref))
    try:
        extra: dict[str, Any] = {}
        if url.startswith("http"):
            extra["pool_manager"] = default_urllib3_manager(None, timeout=FETCH_TIMEOUT)
        client, path = get_transport_and_path(url, quiet=True, **extra)
        remote = client.get_refs(path.encode() if isinstance(path, str) else path)
    except Exception as e:  # dulwich raises many types (HangupException, GitProtocolError, OSError...)
        logger.info("buildpack fetch failed", url=hide_credentials(ref.location), error=type(e).__name__)
        raise BuildFailed(f"cannot read buildpack {ref.display!r}: {_short(e)}") from None
    sha = _pick(remote.refs, remote.symrefs, ref.ref)
    if sha is None:
        raise BuildFailed(f"buildpack {ref.display!r}: no branch, tag or commit {ref.ref or 'HEAD'!r}")
    cache = ctx.state.path("buildpacks", hashlib.sha256(ref.location.encode()).hexdigest()[:16])
    commit = _cached(cache, sha)
    if commit is not None:
        progress.step(f"Using buildpack {ref.display} at {commit[:7]} (cached)")
        return cache / commit
    progress.step(f"Fetching buildpack {ref.display}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        commit = _fetch_into(client, path, sha, ref, Path(tmp))
        target = cache / commit
        try:
            os.replace(Path(tmp) / "tree", target)
        except OSError:
            if not (target / "bin").is_dir():  # not a concurrent fetch of the same commit that got there first
                raise
        (cache / f"{sha}.commit").write_text(commit)
    progress.detail(f"at commit {commit[:7]}")
    return _checked(cache / commit, ref)


def _fetch_into(client: GitClient, path: str | bytes, sha: str, ref: BuildpackRef, tmp: Path) -> str:
    from dulwich.objects import Commit, ObjectID, Tag  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    repo = Repo.init_bare(str(tmp / "repo"), mkdir=True)
    try:
        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            return [ObjectID(sha.encode())]

        try:
            client.fetch(path, repo, determine_wants=wants)
            obj = repo[sha.encode()]
        except Exception as e:
            raise BuildFailed(f"cannot fetch buildpack {ref.display!r}: {_short(e)}") from None
        while isinstance(obj, Tag):
            obj = repo[obj.object[1]]
        if not isinstance(obj, Commit):
            raise BuildFailed(f"buildpack {ref.display!r}: {ref.ref or 'HEAD'} is not a commit")
        commit = obj.id.decode()
    finally:
        repo.close()
    export_tree(tmp / "repo", commit, tmp / "tree")
    return commit


def _cached(cache: Path, sha: str) -> str | None:
    """The commit a fetched ref `sha` (a commit or a tag object) was exported as, if it still is."""
    try:
        commit = (cache / f"{sha}.commit").read_text().strip()
    except OSError:
        return None
    return commit if (cache / commit / "bin").is_dir() else None


def _pick(refs: Mapping[Any, bytes | None], symrefs: Mapping[Any, bytes], want: str) -> str | None:
    """The object a `#ref` names among the remote's refs (HEAD when empty); a full commit id as is."""
    def get(name: str) -> str | None:
        value = refs.get(name.encode())
        return value.decode() if value else None

    if not want:
        return get("HEAD") or get(symrefs.get(b"HEAD", b"refs/heads/main").decode())
    for name in (f"refs/heads/{want}", f"refs/tags/{want}", want if want.startswith("refs/") else ""):
        if name and get(name):
            return get(name)
    if HEX.match(want):
        if len(want) == 40:
            return want
        found = {v.decode() for v in refs.values() if v and v.decode().startswith(want)}
        return found.pop() if len(found) == 1 else None
    return None


def _short(e: BaseException) -> str:
    text = hide_credentials(" ".join(str(e).split())) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."

