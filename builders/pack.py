"""The pack builder: Cloud Native Buildpacks through the `pack` CLI, run with the `sh` package.

`pack build IMAGE --path BUILD_DIR --builder BUILDER --default-process web --pull-policy if-not-present
--env KEY...`: config values reach pack through its environment (never its argv, which `ps` shows).
The builder image is per app or global (`builder-pack:set APP|--global builder IMAGE`, default
heroku/builder:24). Output is streamed line by line. Afterwards the image gets pushdock's labels and,
if it is a CNB image, the lifecycle launcher as its entrypoint, so a Procfile command given as the
container's command runs in the buildpacks' environment (what Dokku does with `--entrypoint launcher`).

`sh` rather than pushdock.proc: the issue asks for it, and it streams and maps exit codes to exceptions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from builders import detect, properties
from builders.build_container import engine_errors
from builders.dockerfile import clean, one_line
from pushdock import docker_client, pushed
from pushdock.builder import BuildRequest, BuildResult
from pushdock.errors import BuildFailed

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress

INSTALL = "install the pack CLI on this host's PATH: https://buildpacks.io/docs/for-platform-operators/how-to/integrate-ci/pack/"
CNB_LAUNCHER = "/cnb/lifecycle/launcher"
# Keys that would change how pack itself runs if they came from the app's config: not passed.
PACK_OWN_ENV = frozenset({"PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
                          "DOCKER_API_VERSION", "PACK_HOME", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR"})


def pack_argv(image: str, build_dir: Path, builder: str, env_keys: list[str]) -> list[str]:
    """The arguments of `pack` for one build (Dokku's invocation, with a non-pulling policy)."""
    argv = ["build", image, "--path", str(build_dir), "--builder", builder, "--default-process", "web",
            "--pull-policy", "if-not-present"]
    for key in env_keys:
        argv += ["--env", key]
    return argv


class PackBuilder:
    """Builds trees with a project.toml (or `builder:set APP selected pack`) with Cloud Native Buildpacks."""

    name = "pack"

    def detect(self, build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
        return detect.pack_rule(build_dir, env, dockerfile)

    def build(self, ctx: Context, req: BuildRequest, progress: Progress) -> BuildResult:
        import sh  # noqa: PLC0415 -- start-up: sh loads when first used

        procfile = req.procfile
        pushed.read_bytes(req.build_dir, "project.toml")  # pack reads it on this host: never through a link out
        exe = shutil.which("pack")
        if exe is None:
            raise BuildFailed(f"pack is not installed: {INSTALL}",
                              hint="or build with the buildpacks pushdock ships: `builder:set APP selected herokuish`")
        builder, where = properties.get_pack_builder(ctx.state, req.app)
        keys = sorted(k for k in req.env if k not in PACK_OWN_ENV)
        skipped = sorted(set(req.env) - set(keys))
        if skipped:
            progress.detail(f"not passed to pack (they would change how pack runs): {', '.join(skipped)}")
        progress.step(f"Building with pack and {builder} ({where} builder image)")
        argv = pack_argv(req.image, req.build_dir, builder, keys)
        logger.info("pack build", image=req.image, builder=builder, env_keys=keys)
        env = {**os.environ, **{k: req.env[k] for k in keys}}
        # _bg_exc=False: a failure is raised here, at the end of the output, not also in sh's reader thread
        running: Any = sh.Command(exe)(*argv, _iter=True, _err_to_out=True, _env=env, _cwd=str(req.build_dir),
                                  _bg_exc=False)
        try:
            for line in running:
                progress.line(clean(str(line).rstrip("\n")))
        except sh.ErrorReturnCode as e:
            raise BuildFailed(f"pack build failed (exit status {e.exit_code}); see the output above") from None
        except sh.SignalException as e:
            raise BuildFailed(f"pack build was killed ({one_line(str(e.exit_code))})") from None
        except BaseException:  # cancelled (`builds:cancel`) or interrupted: pack must not build on
            with contextlib.suppress(Exception):
                running.kill()
            raise
        _finish(req.app, req.image)
        return BuildResult(image=req.image, processes={"web": "", **procfile})


def _finish(app: str, image: str) -> None:
    """pushdock's labels on the image; a CNB image's entrypoint becomes the launcher (keeps its default CMD)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    with engine_errors():
        api = docker_client.client().api
        try:
            config = api.inspect_image(image).get("Config") or {}
        except docker.errors.ImageNotFound:
            raise BuildFailed(f"pack reported success but made no image {image}") from None
        lines = [f"FROM {image}", f'LABEL pushdock.app="{app}" pushdock.builder="pack"']
        if str((config.get("Entrypoint") or [""])[0]).startswith("/cnb/"):
            lines.append(f'ENTRYPOINT ["{CNB_LAUNCHER}"]')
            lines.append(f'CMD {_json_list(config.get("Cmd") or ["web"])}')
        error = None
        dockerfile = io.BytesIO(("\n".join(lines) + "\n").encode())
        for chunk in api.build(fileobj=dockerfile, tag=image, rm=True, forcerm=True, pull=False, decode=True):
            error = chunk.get("error") or error
        if error:
            raise BuildFailed(f"labelling the pack image failed: {one_line(str(error))}")


def _json_list(items: list[str]) -> str:
    return json.dumps([str(i) for i in items])
