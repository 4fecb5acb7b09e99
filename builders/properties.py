"""The builders' per-app properties: validated on the way in (UsageError) and on the way out (BuildFailed).

- `builder/<app>/selected`: a forced builder name (`builder:set APP selected NAME`);
- `builder-dockerfile/<app>/dockerfile-path`: the Dockerfile, relative to the build dir;
- `builder-dockerfile/<app>/build-args`: JSON list of config keys passed as `--build-arg KEY=value`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from builders import DETECTION_ORDER
from pushdock.errors import BuildFailed, UsageError
from pushdock.state import ENV_KEY, validate_env_key

if TYPE_CHECKING:
    from pushdock.state import State

BUILDER = "builder"
DOCKERFILE = "builder-dockerfile"
SELECTED = "selected"
DOCKERFILE_PATH = "dockerfile-path"
BUILD_ARGS = "build-args"
DOCKERFILE_KEYS = (DOCKERFILE_PATH, BUILD_ARGS)


# -- builder:set APP selected NAME ----------------------------------------------------------------
def get_selected(state: State, app: str) -> str | None:
    value = (state.get(BUILDER, app, SELECTED) or "").strip()
    return value or None


def set_selected(state: State, app: str, value: str, *, known: Iterable[str] = ()) -> str | None:
    """Force a builder for `app` (empty value: detect again); return what is stored."""
    name = value.strip()
    if not name:
        state.delete(BUILDER, app, SELECTED)
        return None
    names = sorted(set(DETECTION_ORDER) | set(known))
    if name not in names:
        raise UsageError(f"unknown builder {name!r}: use one of {', '.join(names)}")
    state.set(BUILDER, app, SELECTED, name)
    return name


# -- builder-dockerfile:set APP dockerfile-path PATH ----------------------------------------------
def check_relative_path(value: str) -> str:
    """Return `value` normalised if it is a relative path that stays inside the build dir."""
    raw = value.strip()
    path = PurePosixPath(raw)
    if not raw or path.is_absolute() or "\\" in raw or "\0" in raw:
        raise UsageError(f"invalid dockerfile-path {value!r}: give a path relative to the repository root")
    depth = 0
    parts = []
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UsageError(f"invalid dockerfile-path {value!r}: it leaves the repository")
            parts.pop()
        elif part != ".":
            depth += 1
            parts.append(part)
    if not parts:
        raise UsageError(f"invalid dockerfile-path {value!r}: it names a directory, not a file")
    return "/".join(parts)


def get_dockerfile_path(state: State, app: str) -> str | None:
    value = (state.get(DOCKERFILE, app, DOCKERFILE_PATH) or "").strip()
    return value or None


def set_dockerfile_path(state: State, app: str, value: str) -> str | None:
    """Store the app's Dockerfile path (empty value: back to `Dockerfile`); return what is stored."""
    if not value.strip():
        state.delete(DOCKERFILE, app, DOCKERFILE_PATH)
        return None
    path = check_relative_path(value)
    state.set(DOCKERFILE, app, DOCKERFILE_PATH, path)
    return path


def resolve_dockerfile(build_dir: Path, configured: str | None) -> str:
    """The Dockerfile to build, relative to `build_dir`; BuildFailed if it is missing or escapes."""
    name = configured or "Dockerfile"
    try:
        rel = check_relative_path(name)
    except UsageError as e:
        raise BuildFailed(e.message) from None
    root = build_dir.resolve()
    target = (root / rel).resolve()  # follows symlinks: a link out of the tree is an escape too
    if not target.is_relative_to(root):
        raise BuildFailed(f"invalid dockerfile-path {name!r}: it leaves the repository")
    if not target.is_file():
        if configured:
            raise BuildFailed(f"invalid dockerfile-path {name!r}: no such file in the pushed tree")
        raise BuildFailed("no Dockerfile found in the pushed tree")
    return target.relative_to(root).as_posix()


# -- builder-dockerfile:set APP build-args KEY1,KEY2 ----------------------------------------------
def parse_build_args(value: str) -> list[str]:
    """`KEY1,KEY2` (spaces allowed) -> ["KEY1", "KEY2"], each a valid config key, no duplicates."""
    keys: list[str] = []
    for raw in value.replace(" ", ",").split(","):
        key = raw.strip()
        if key and validate_env_key(key) not in keys:
            keys.append(key)
    return keys


def get_build_args(state: State, app: str) -> list[str]:
    """The config keys passed to the build; BuildFailed if the stored property is malformed."""
    try:
        keys = state.get_json(DOCKERFILE, app, BUILD_ARGS, [])
    except ValueError:
        keys = None
    if not isinstance(keys, list) or not all(isinstance(k, str) and ENV_KEY.match(k) for k in keys):
        raise BuildFailed(
            "invalid build-args property: expected a list of config keys",
            hint="reset it with `builder-dockerfile:set APP build-args KEY1,KEY2`",
        )
    return keys


def set_build_args(state: State, app: str, value: str) -> list[str]:
    """Store the config keys passed as build args (empty value: none); return what is stored."""
    keys = parse_build_args(value)
    if keys:
        state.set_json(DOCKERFILE, app, BUILD_ARGS, keys)
    else:
        state.delete(DOCKERFILE, app, BUILD_ARGS)
    return keys


def set_dockerfile_property(state: State, app: str, key: str, value: str) -> str | None:
    """`builder-dockerfile:set APP KEY VALUE`; return the stored value as text (None: unset)."""
    if key == DOCKERFILE_PATH:
        return set_dockerfile_path(state, app, value)
    if key == BUILD_ARGS:
        return ",".join(set_build_args(state, app, value)) or None
    raise UsageError(f"unknown builder-dockerfile property {key!r}: use {' or '.join(DOCKERFILE_KEYS)}")


def build_args(keys: Iterable[str], env: dict[str, str]) -> dict[str, str]:
    """{key: value} for the listed keys the app's env has (missing keys are skipped)."""
    return {k: env[k] for k in keys if k in env}
