"""Which builder builds a pushed tree: a pure function over the tree, the app's env and `builder:set`.

The rules (SPEC, "Deploys"), tried in DETECTION_ORDER:
- a forced `builder:set APP selected NAME` wins;
- `dockerfile`: a Dockerfile, unless `.buildpacks`, `BUILDPACK_URL` or `project.toml` exist;
- `pack`: a `project.toml`;
- `herokuish`: everything else (the fallback, last in the order).
The app's buildpack list (`buildpacks:add`) and app.json's `buildpacks` count as `.buildpacks`: the builders
plugin writes that file at post-extract (builders/herokuish.py: write_app_list), before detection runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from builders import DETECTION_ORDER
from pushdock import pushed
from pushdock.errors import BuildFailed

DEFAULT_DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class _Tree:
    """What detection looks at, read once."""

    dockerfile: str
    has_dockerfile: bool
    has_project_toml: bool
    buildpack_marker: str | None  # why the tree asks for buildpacks, or None


@dataclass(frozen=True)
class _Match:
    reason: str
    hint: str | None = None


def _dockerfile_rule(tree: _Tree) -> _Match | None:
    if tree.has_dockerfile and tree.buildpack_marker is None and not tree.has_project_toml:
        return _Match(f"{tree.dockerfile} found")
    return None


def _pack_rule(tree: _Tree) -> _Match | None:
    if tree.has_project_toml:
        hint = f"remove project.toml to build with the {tree.dockerfile}" if tree.has_dockerfile else None
        return _Match("project.toml found", hint)
    return None


def _herokuish_rule(tree: _Tree) -> _Match:
    if tree.buildpack_marker is not None:
        hint = None
        if tree.has_dockerfile:
            hint = f"remove .buildpacks and BUILDPACK_URL to build with the {tree.dockerfile}"
        return _Match(tree.buildpack_marker, hint)
    return _Match(f"no {tree.dockerfile} found", f"add a {tree.dockerfile} to the repository root")


RULES: Mapping[str, Callable[[_Tree], _Match | None]] = {
    "dockerfile": _dockerfile_rule,
    "pack": _pack_rule,
    "herokuish": _herokuish_rule,
}


def detect_builder(
    build_dir: Path,
    env: Mapping[str, str],
    forced: str | None,
    available: Iterable[str],
    *,
    dockerfile: str | None = None,
) -> tuple[str, str]:
    """Return (builder name, reason) for the tree in `build_dir`.

    `forced` is the app's `builder:set ... selected` value (empty or None: detect). `available` names
    the builders that are installed; a tree that needs another one raises BuildFailed saying what
    pushdock can build today. `dockerfile` is the app's `builder-dockerfile` dockerfile-path, if set.
    """
    names = frozenset(available)
    if forced and forced.strip():
        name = forced.strip()
        match = _Match("selected with builder:set", "clear it with `builder:set APP selected` (no value)")
    else:
        tree = _read_tree(build_dir, env, dockerfile or DEFAULT_DOCKERFILE)
        name, match = _first_match(tree)
    if name not in names:
        raise BuildFailed(
            f"{match.reason}: {_supported(names)} (the {name} builder is not available yet)", hint=match.hint
        )
    return name, match.reason


def _first_match(tree: _Tree) -> tuple[str, _Match]:
    for name in DETECTION_ORDER:  # every name has a rule (a unit test checks it)
        match = RULES[name](tree)
        if match is not None:
            return name, match
    raise AssertionError("the last rule in DETECTION_ORDER is the fallback and always matches")


def _read_tree(build_dir: Path, env: Mapping[str, str], dockerfile: str) -> _Tree:
    return _Tree(
        dockerfile=dockerfile,
        has_dockerfile=pushed.is_file(build_dir, dockerfile),
        has_project_toml=pushed.is_file(build_dir, "project.toml"),
        buildpack_marker=_buildpack_marker(build_dir, env),
    )


def _buildpack_marker(build_dir: Path, env: Mapping[str, str]) -> str | None:
    if pushed.exists(build_dir, ".buildpacks"):
        return ".buildpacks found"
    if env.get("BUILDPACK_URL", "").strip():
        return "BUILDPACK_URL is set"
    if dotenv_value(build_dir, "BUILDPACK_URL"):
        return "BUILDPACK_URL is set in .env"
    return None


def dotenv_value(build_dir: Path, key: str) -> str:
    """`key`'s value in the tree's committed `.env` (as Dokku reads it), or "" if it has none."""
    text = pushed.read_text(build_dir, ".env")
    if text is None:
        return ""
    value = ""
    for raw in text.splitlines():
        line = raw.strip()
        line = line.removeprefix("export ").lstrip()
        name, sep, rest = line.partition("=")
        if sep and name.strip() == key:
            value = rest.strip().strip("'\"").strip()
    return value


def _supported(names: frozenset[str]) -> str:
    if not names:
        return "no builder is installed"
    if names == {"dockerfile"}:
        return "pushdock builds apps with a Dockerfile today"
    return f"pushdock builds apps with {', '.join(sorted(names))} today"
