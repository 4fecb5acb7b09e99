"""What each shipped builder takes: the rules of SPEC "Deploys", one per builder, asked in DETECTION_ORDER
(pushdock/builder.py) by the pipeline's detection (hooks/detect.py):
- `dockerfile`: a Dockerfile, unless `.buildpacks`, `BUILDPACK_URL` or `project.toml` exist;
- `pack`: a `project.toml`;
- `herokuish`: everything else (the fallback, last in the order).
The app's buildpack list (`buildpacks:add`) and app.json's `buildpacks` count as `.buildpacks`: the builders
plugin writes that file at post-extract (builders/herokuish.py: write_app_list), before detection runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pushdock import pushed


def dockerfile_rule(build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
    if (pushed.is_file(build_dir, dockerfile) and buildpack_marker(build_dir, env) is None
            and not pushed.is_file(build_dir, "project.toml")):
        return f"{dockerfile} found"
    return None


def pack_rule(build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
    return "project.toml found" if pushed.is_file(build_dir, "project.toml") else None


def herokuish_rule(build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str:
    return buildpack_marker(build_dir, env) or f"no {dockerfile} found"


def buildpack_marker(build_dir: Path, env: Mapping[str, str]) -> str | None:
    """Why the tree asks for buildpacks, or None."""
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
