"""Which builder builds a pushed tree: after the `builder-detect` trigger and `builder:set`, the registered
builders' own `detect()`, asked in DETECTION_ORDER (pushdock/builder.py), then any other by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pushdock.builder import DEFAULT_DOCKERFILE, DETECTION_ORDER, Builder
from pushdock.errors import BuildFailed


def detect_builder(
    build_dir: Path,
    env: Mapping[str, str],
    forced: str | None,
    registry: Mapping[str, Builder],
    *,
    dockerfile: str | None = None,
) -> tuple[str, str]:
    """Return (builder name, reason) for the tree in `build_dir`.

    `forced` is the trigger's or the app's `builder:set ... selected` value (empty or None: detect);
    `registry` the registered builders; `dockerfile` the app's `builder-dockerfile` dockerfile-path, if set.
    BuildFailed, saying what pushdock can build, when the forced builder is not registered or none takes the tree.
    """
    names = frozenset(registry)
    if forced and forced.strip():
        name = forced.strip()
        if name not in names:
            raise BuildFailed(f"selected with builder:set: {_supported(names)} (the {name} builder is not available "
                              "yet)", hint="clear it with `builder:set APP selected` (no value)")
        return name, "selected with builder:set"
    for name in order(names):
        reason = registry[name].detect(build_dir, env, dockerfile or DEFAULT_DOCKERFILE)
        if reason is not None:
            return name, reason
    raise BuildFailed(f"no builder takes this app: {_supported(names)}")


def order(names: frozenset[str]) -> list[str]:
    """The registered builders in the order detection asks them."""
    return [n for n in DETECTION_ORDER if n in names] + sorted(names - set(DETECTION_ORDER))


def _supported(names: frozenset[str]) -> str:
    if not names:
        return "no builder is installed"
    if names == {"dockerfile"}:
        return "pushdock builds apps with a Dockerfile today"
    return f"pushdock builds apps with {', '.join(sorted(names))} today"
