"""The herokuish builder: Heroku-API buildpacks compile the app in a container of the stack image.

Which buildpacks (first that applies wins):
1. the `.buildpacks` file of the pushed tree (one buildpack per line, all run in order);
2. `BUILDPACK_URL` in the app's config or in a committed `.env`;
3. the app's list (`buildpacks:add|set`), then app.json's `buildpacks[].url`: written to `.buildpacks` at
   post-extract, as Dokku does, so a Dockerfile no longer wins detection;
4. otherwise the first shipped buildpack, in BUILDPACK_ORDER, whose `bin/detect` succeeds.

The build (builders/runtime/build inside the container): the tree is copied to /app, each buildpack runs
`bin/compile /app /cache /tmp/env` as uid 32767 with the app's persistent cache (DATA_DIR/cache/APP) and
its config (one file per key, never part of the image) mounted; then the container is committed as the
image, with `/start` as its entrypoint. `bin/release` gives default process types and config vars.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from builders import BUILDPACK_ORDER, build_container, detect, properties
from builders.buildpack_source import SHIPPED_DIR, BuildpackRef, parse_buildpack, parse_lines, resolve
from builders.detect import dotenv_value
from pushdock import jsonc, proc, pushed
from pushdock.builder import BuildRequest, BuildResult
from pushdock.errors import BuildFailed, UsageError
from pushdock.state import ENV_KEY, PROCESS_NAME

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import State

LIST_HEADER = "# written by pushdock from the app's buildpack list (buildpacks:list)"
HEADERS = {"buildpacks:list": LIST_HEADER, "app.json": "# written by pushdock from the buildpacks of app.json"}
NOTHING_DETECTED = 100  # the driver's exit status when no buildpack's bin/detect succeeded
APP_UID = 32767


@dataclass(frozen=True)
class Selection:
    """The buildpacks a build runs, and why."""

    refs: tuple[BuildpackRef, ...]
    source: str  # .buildpacks | BUILDPACK_URL | buildpacks:list | detection
    detect: bool  # True: the first of `refs` whose bin/detect succeeds; False: all of them, in order

    def describe(self) -> str:
        names = ", ".join(r.display for r in self.refs)
        if self.detect:
            return f"the first that detects the app of {names}"
        return f"{names} (from {self.source})"


def select(state: State, app: str, build_dir: Path, env: dict[str, str]) -> Selection:
    """The buildpacks for the tree in `build_dir`; BuildFailed (one line) on a bad reference."""
    text = pushed.read_text(build_dir, ".buildpacks")
    if text is not None:
        source = next((src for src, header in HEADERS.items() if text.startswith(header)), ".buildpacks")
        refs = parse_lines(text, source if source == ".buildpacks" else f"the buildpacks of {source}")
        if refs:
            return Selection(tuple(refs), source, detect=False)
    url = (env.get("BUILDPACK_URL") or "").strip() or dotenv_value(build_dir, "BUILDPACK_URL")
    if url:
        try:
            return Selection((parse_buildpack(url),), "BUILDPACK_URL", detect=False)
        except UsageError as e:
            raise BuildFailed(f"BUILDPACK_URL: {e.message}") from None
    for source, listed in _lists(state, app, build_dir):
        if listed:
            return Selection(tuple(parse_lines("\n".join(listed), f"the buildpacks of {source}")), source, False)
    return Selection(tuple(BuildpackRef("shipped", name, text=f"pushdock/{name}") for name in BUILDPACK_ORDER),
                     "detection", detect=True)


def write_app_list(state: State, app: str, build_dir: Path, env: dict[str, str]) -> bool:
    """At post-extract: the app's list (else app.json's `buildpacks`) becomes `.buildpacks`, unless the tree
    or BUILDPACK_URL chooses; so they win over a Dockerfile in detection, as in Dokku."""
    if pushed.exists(build_dir, ".buildpacks") or (env.get("BUILDPACK_URL") or "").strip():
        return False
    if dotenv_value(build_dir, "BUILDPACK_URL"):
        return False
    for source, listed in _lists(state, app, build_dir):
        if listed:
            pushed.write_new(build_dir, ".buildpacks", "\n".join([HEADERS[source], *listed]) + "\n")
            return True
    return False


def _lists(state: State, app: str, build_dir: Path) -> list[tuple[str, list[str]]]:
    """The app's buildpack list, then app.json's `buildpacks[].url`, in that order."""
    return [("buildpacks:list", properties.get_buildpacks(state, app)), ("app.json", _app_json_urls(build_dir))]


def _app_json_urls(build_dir: Path) -> list[str]:
    try:
        data = jsonc.loads(pushed.read_text(build_dir, "app.json") or "null")  # comments, trailing commas: as Dokku
    except (UsageError, ValueError):
        return []  # no app.json, or one the app.json stage rejects with its own message
    entries = data.get("buildpacks") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [str(e["url"]).strip() for e in entries if isinstance(e, dict) and str(e.get("url") or "").strip()]


def detect_shipped(build_dir: Path) -> str | None:
    """The shipped buildpack whose bin/detect accepts the tree, run on this host (for `builder:report`)."""
    for name in BUILDPACK_ORDER:
        if proc.run([str(SHIPPED_DIR / name / "bin" / "detect"), str(build_dir)], check=False).returncode == 0:
            return name
    return None


class HerokuishBuilder:
    """Builds any tree with Heroku-API buildpacks (the fallback builder)."""

    name = "herokuish"

    def detect(self, build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
        return detect.herokuish_rule(build_dir, env, dockerfile)

    def build(self, ctx: Context, req: BuildRequest, progress: Progress) -> BuildResult:
        procfile = req.procfile
        selection = select(ctx.state, req.app, req.build_dir, req.env)
        if not selection.detect:
            progress.step(f"Using buildpacks {selection.describe()}")
        folders = [resolve(ctx, ref, req.build_dir, progress) for ref in selection.refs]
        cache = ctx.state.path("cache", req.app)
        cache.mkdir(parents=True, exist_ok=True)
        scratch = ctx.state.make_build_dir(req.app, "env")  # 0700: hides ENV_DIR
        env_dir = _env_dir(scratch, req.env)
        try:
            mounts = [(req.build_dir, "/tmp/src"), (env_dir, "/tmp/env"), (cache, "/cache"),
                      (build_container.RUNTIME_DIR, "/tmp/pushdock")]
            paths = [f"/tmp/buildpacks/{i:02d}-{ref.name}" for i, ref in enumerate(selection.refs)]
            mounts += zip(folders, paths, strict=True)
            argv = ["/bin/bash", "/tmp/pushdock/build", "--detect" if selection.detect else "--all", *paths]
            with build_container.BuildContainer(ctx, req.app, self.name, argv, mounts) as box:
                status = box.run(progress.line)
                if status == NOTHING_DETECTED:
                    tried = ", ".join(r.display for r in selection.refs)
                    raise BuildFailed(
                        f"no buildpack detected this app (tried {tried})",
                        hint="add a Procfile, requirements.txt, package.json or index.html, "
                             "or choose one with .buildpacks, BUILDPACK_URL or buildpacks:add",
                    )
                if status != 0:
                    raise BuildFailed(f"buildpack compile failed (exit status {status}); see the output above")
                defaults, config_vars = parse_release(box.read_file("/app/.release") or "")
                processes = {**defaults, **procfile}
                if not processes:
                    raise BuildFailed("no process types: add a Procfile (e.g. `web: gunicorn app:app`)")
                extra = {".profile.d/000-buildpack-config.sh": profile_script(config_vars)} if config_vars else {}
                if not procfile and defaults:
                    extra["Procfile"] = "".join(f"{k}: {v}\n" for k, v in defaults.items())
                box.add_files("/app", extra, uid=APP_UID)
                box.commit(req.image, [
                    'ENTRYPOINT ["/start"]', 'CMD ["web"]', "WORKDIR /app", f"USER {APP_UID}:{APP_UID}",
                    "ENV HOME=/app", f'LABEL pushdock.app="{req.app}" pushdock.builder="{self.name}"',
                ])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logger.info("herokuish build done", image=req.image, processes=sorted(processes))
        return BuildResult(image=req.image, processes=processes)


def _env_dir(parent: Path, env: dict[str, str]) -> Path:
    """ENV_DIR: one file per config key, readable only by the build user, in a root-only `parent` (so no host
    user that happens to have uid 32767 can reach it); the caller removes it after the build."""
    path = parent / "env"
    path.mkdir(mode=0o700)
    for key, value in env.items():
        if ENV_KEY.match(key):
            f = path / key
            f.write_text(value)
            os.chmod(f, 0o600)
            os.chown(f, APP_UID, APP_UID)
    os.chown(path, APP_UID, APP_UID)
    return path


# -- bin/release output: the YAML subset buildpacks print ------------------------------------------
def parse_release(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(default_process_types, config_vars) from `bin/release` YAML (block or one-line flow mappings)."""
    sections: dict[str, dict[str, str]] = {"default_process_types": {}, "config_vars": {}}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#") or line.strip() in ("---", "..."):
            continue
        if not line[0].isspace():
            key, _, rest = line.partition(":")
            current = sections.get(key.strip())
            rest = rest.strip()
            if current is not None and rest.startswith("{") and rest.endswith("}"):
                for item in rest[1:-1].split(","):
                    _put(current, item)
                current = None
        elif current is not None:
            _put(current, line)
    processes = {k.lower(): v for k, v in sections["default_process_types"].items() if PROCESS_NAME.match(k.lower())}
    config = {k: v for k, v in sections["config_vars"].items() if ENV_KEY.match(k)}
    return processes, config


def _put(into: dict[str, str], item: str) -> None:
    key, sep, value = item.strip().partition(":")
    if sep and key.strip():
        into[_scalar(key)] = _scalar(value)


def _scalar(text: str) -> str:
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return s[1:-1].replace("''", "'")
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return s


def profile_script(config_vars: dict[str, str]) -> str:
    """`bin/release` config_vars as defaults: the app's own config wins."""
    lines = ["# config_vars from the buildpacks' bin/release (defaults: the app's config wins)"]
    for key, value in sorted(config_vars.items()):
        lines.append(f'if [ -z "${{{key}+x}}" ]; then export {key}={shlex.quote(value)}; fi')
    return "\n".join(lines) + "\n"
