"""The builders' per-app properties: validated on the way in (UsageError) and on the way out (BuildFailed).

- `builder/<app>/selected`: a forced builder name (`builder:set APP selected NAME`);
- `builder-dockerfile/<app>/dockerfile-path`: the Dockerfile, relative to the build dir;
- `builder-dockerfile/<app>/build-args`: JSON list of config keys passed as `--build-arg KEY=value`;
- `buildpacks/<app>/list`: JSON list of the app's buildpacks (`buildpacks:add|set|remove|clear`);
- `builder-pack/<app>/builder`, `builder-pack/--global/builder`: the CNB builder image for `pack build`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from builders.buildpack_source import parse_buildpack
from pushdock import pushed
from pushdock.builder import DETECTION_ORDER
from pushdock.errors import BuildFailed, UsageError
from pushdock.state import ENV_KEY, GLOBAL, validate_env_key

if TYPE_CHECKING:
    from pushdock.state import State

BUILDER = "builder"
DOCKERFILE = "builder-dockerfile"
SELECTED = "selected"
DOCKERFILE_PATH = "dockerfile-path"
BUILD_ARGS = "build-args"
DOCKERFILE_KEYS = (DOCKERFILE_PATH, BUILD_ARGS)
BUILDPACKS = "buildpacks"
BUILDPACK_LIST = "list"
PACK = "builder-pack"
PACK_BUILDER = "builder"
DEFAULT_PACK_BUILDER = "heroku/builder:24"
IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")


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
    parts: list[str] = []
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
    try:
        target = pushed.locate(build_dir, rel)  # follows symlinks inside the tree only
    except UsageError:
        raise BuildFailed(f"invalid dockerfile-path {name!r}: it leaves the repository") from None
    if target is None:
        if configured:
            raise BuildFailed(f"invalid dockerfile-path {name!r}: no such file in the pushed tree")
        raise BuildFailed("no Dockerfile found in the pushed tree")
    return target.relative_to(build_dir.resolve()).as_posix()


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


# `repo:purge-cache`: the engine's layer cache is shared by every app, so it is not emptied; the app's next
# Dockerfile build ignores it instead (the flag is dropped once a build succeeded).
NO_CACHE = "no-cache-next-build"


def build_args(keys: Iterable[str], env: dict[str, str]) -> dict[str, str]:
    """{key: value} for the listed keys the app's env has (missing keys are skipped)."""
    return {k: env[k] for k in keys if k in env}


# -- buildpacks:add|set|remove|clear APP ----------------------------------------------------------
def get_buildpacks(state: State, app: str) -> list[str]:
    """The app's buildpack list (empty: none set); BuildFailed if the stored property is malformed."""
    try:
        value = state.get_json(BUILDPACKS, app, BUILDPACK_LIST, [])
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildFailed("invalid buildpacks list", hint="reset it with `buildpacks:clear APP`")
    return value


def _store_buildpacks(state: State, app: str, urls: list[str]) -> list[str]:
    if urls:
        state.set_json(BUILDPACKS, app, BUILDPACK_LIST, urls)
    else:
        state.delete(BUILDPACKS, app, BUILDPACK_LIST)
    return urls


def _checked_url(url: str) -> str:
    return parse_buildpack(url).text


def _index(index: int, size: int) -> int:
    """A 1-based --index into a list of `size` (size + 1 appends)."""
    if not 1 <= index <= size + 1:
        raise UsageError(f"invalid --index {index}: use 1 to {size + 1}")
    return index - 1


def add_buildpack(state: State, app: str, url: str, index: int | None = None) -> list[str]:
    """Insert `url` (at 1-based `index`, default last); UsageError if it is bad or already listed."""
    urls = get_buildpacks(state, app)
    url = _checked_url(url)
    if url in urls:
        raise UsageError(f"buildpack {url} is already in the list of {app}")
    urls.insert(len(urls) if index is None else _index(index, len(urls)), url)
    return _store_buildpacks(state, app, urls)


def set_buildpack(state: State, app: str, url: str, index: int | None = None) -> list[str]:
    """Replace the list with `url`, or with --index, the buildpack at that position (or append)."""
    url = _checked_url(url)
    if index is None:
        return _store_buildpacks(state, app, [url])
    urls = get_buildpacks(state, app)
    i = _index(index, len(urls))
    if url in urls and urls.index(url) != i:
        raise UsageError(f"buildpack {url} is already in the list of {app}")
    if i == len(urls):
        urls.append(url)
    else:
        urls[i] = url
    return _store_buildpacks(state, app, urls)


def remove_buildpack(state: State, app: str, url: str | None, index: int | None = None) -> list[str]:
    """Remove by URL or by 1-based --index; UsageError if it is not in the list."""
    urls = get_buildpacks(state, app)
    if (url is None) == (index is None):
        raise UsageError("give a buildpack URL or --index N")
    if index is not None:
        if not 1 <= index <= len(urls):
            raise UsageError(f"invalid --index {index}: {app} has {len(urls)} buildpack(s)")
        del urls[index - 1]
    elif url not in urls:
        raise UsageError(f"buildpack {url} is not in the list of {app}")
    else:
        urls.remove(url)
    return _store_buildpacks(state, app, urls)


def clear_buildpacks(state: State, app: str) -> None:
    state.delete(BUILDPACKS, app, BUILDPACK_LIST)


# -- builder-pack:set [--global|APP] builder IMAGE ------------------------------------------------
def get_pack_builder(state: State, app: str) -> tuple[str, str]:
    """(builder image, where it comes from: app, global or default)."""
    for scope, where in ((app, "app"), (GLOBAL, "global")):
        value = (state.get(PACK, scope, PACK_BUILDER) or "").strip()
        if value:
            return value, where
    return DEFAULT_PACK_BUILDER, "default"


def set_pack_property(state: State, app: str, key: str, value: str) -> str | None:
    """`builder-pack:set APP|--global builder IMAGE` (empty: unset); return what is stored."""
    if key != PACK_BUILDER:
        raise UsageError(f"unknown builder-pack property {key!r}: use {PACK_BUILDER}")
    image = value.strip()
    if not image:
        state.delete(PACK, app, PACK_BUILDER)
        return None
    if not IMAGE_REF.match(image):
        raise UsageError(f"invalid builder image {value!r}: give an image reference such as {DEFAULT_PACK_BUILDER}")
    state.set(PACK, app, PACK_BUILDER, image)
    return image
