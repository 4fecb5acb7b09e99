"""`builder:report APP`: the selected builder, and what detection says of the last deployed commit and why."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builders import properties
from builders.buildpack_source import hide_credentials
from builders.herokuish import detect_shipped, select, write_app_list
from hooks.detect import detect_builder
from hooks.source import export_tree
from pushdock import pushed
from pushdock.errors import PushdockError

if TYPE_CHECKING:
    from pushdock.context import Context


def builder_report(ctx: Context, app: str) -> dict[str, Any]:
    """The report's fields, in display order (names are part of the `--format json` output)."""
    state = ctx.state
    selected = properties.get_selected(state, app) or ""
    pack_image, pack_where = properties.get_pack_builder(state, app)
    fields: dict[str, Any] = {
        "builder selected": selected,
        "builder detected": "",
        "builder reason": "",
        "builder detected for": "",
        "builder buildpacks": "",
        "builder buildpack list": ",".join(hide_credentials(u) for u in properties.get_buildpacks(state, app)),
        "builder dockerfile path": properties.get_dockerfile_path(state, app) or "",
        "builder build args": ",".join(properties.get_build_args(state, app)),
        "builder pack builder": f"{pack_image} ({pack_where})",
    }
    release = state.current_release(app)
    if release is None or not release.sha:
        fields["builder reason"] = "not deployed yet: detection needs a pushed commit"
        return fields
    fields["builder detected for"] = f"{release.name} ({release.sha[:7]})"
    tmp = state.make_build_dir(app, "report")
    try:
        fields.update(_detect(ctx, app, release.sha, tmp))
    except PushdockError as e:
        fields["builder reason"] = f"detection failed: {e.message}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fields


def _detect(ctx: Context, app: str, sha: str, build_dir: Path) -> dict[str, str]:
    state, env = ctx.state, ctx.state.get_env(app)
    export_tree(state.repo_path(app), sha, build_dir, submodules=False)  # a report fetches nothing
    write_app_list(state, app, build_dir, env)
    forced = ctx.bus.first("builder_detect", ctx=ctx, app=app, build_dir=str(build_dir)) or \
        properties.get_selected(state, app)
    name, reason = detect_builder(build_dir, env, forced, ctx.bus.registry("builders"),
                                  dockerfile=properties.get_dockerfile_path(state, app))
    out = {"builder detected": name, "builder reason": reason}
    if name == "herokuish":
        selection = select(state, app, build_dir, env)
        if selection.detect:
            pushed.drop_links_out(build_dir)  # bin/detect runs here, on the host: it must not follow them
            found = detect_shipped(build_dir)
            out["builder buildpacks"] = f"pushdock/{found} (detected)" if found else "none detects this app"
        else:
            out["builder buildpacks"] = selection.describe()
    return out
