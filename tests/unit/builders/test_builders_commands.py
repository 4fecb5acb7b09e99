"""The builder commands through the real edge: builder:set|report, builder-dockerfile:set|report, stack:build."""

from __future__ import annotations

import json

from pushdock.context import Context
from pushdock.state import Identity

APP = "myapp"


def test_builder_set_and_report(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("builder:set", APP, "selected", "dockerfile") == (
        0, "-----> Set builder selected to dockerfile for myapp\n", "")
    assert ctx.state.get("builder", APP, "selected") == "dockerfile"
    rc, out, _ = run("builder:report", APP, "--format", "json")
    assert rc == 0
    assert json.loads(out)["builder selected"] == "dockerfile"
    rc, out, _ = run("builder:report", APP)
    assert out.splitlines()[0] == "=====> myapp builder information"
    assert run("builder:set", APP, "selected")[1] == "-----> Unset builder selected for myapp\n"
    assert ctx.state.get("builder", APP, "selected") is None
    assert run("builder:set", APP, "selected", "")[0] == 0


def test_builder_set_rejects_unknown_names_and_keys(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    rc, _, err = run("builder:set", APP, "selected", "docker")
    assert (rc, err) == (2, "error: unknown builder 'docker': use one of dockerfile, herokuish, pack\n")
    rc, _, err = run("builder:set", APP, "build-dir", "x")
    assert (rc, err) == (2, "error: unknown builder property 'build-dir': use selected\n")
    assert ctx.state.get("builder", APP, "selected") is None


def test_builder_set_needs_an_existing_app(run) -> None:
    rc, _, err = run("builder:set", "nope", "selected", "pack")
    assert (rc, err) == (1, "error: app nope does not exist\n")


def test_builder_commands_check_access(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    ctx.state.create_app("other")
    deployer = Identity(name="dev", role="deployer", apps=("other",), door="ssh")
    for argv in (("builder:set", APP, "selected", "pack"), ("builder:report", APP),
                 ("builder-dockerfile:set", APP, "build-args", "A"), ("builder-dockerfile:report", APP),
                 ("stack:build",)):
        rc, _, err = run(*argv, identity=deployer)
        assert rc == 13, argv
        assert err.startswith("error: dev (deployer) "), err
    assert ctx.state.get("builder", APP, "selected") is None
    assert run("builder:set", "other", "selected", "pack", identity=deployer)[0] == 0


def test_builder_dockerfile_set(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("builder-dockerfile:set", APP, "dockerfile-path", "./docker/Dockerfile.web")[1] == (
        "-----> Set dockerfile-path to docker/Dockerfile.web for myapp\n")
    assert run("builder-dockerfile:set", APP, "build-args", "NODE_ENV,PIP_INDEX_URL")[1] == (
        "-----> Set build-args to NODE_ENV,PIP_INDEX_URL for myapp\n")
    assert ctx.state.get_json("builder-dockerfile", APP, "build-args") == ["NODE_ENV", "PIP_INDEX_URL"]
    rc, out, _ = run("builder-dockerfile:report", APP, "--format", "json")
    assert json.loads(out) == {"dockerfile path": "docker/Dockerfile.web", "build args": "NODE_ENV,PIP_INDEX_URL"}
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert {k: report[k] for k in ("builder selected", "builder dockerfile path", "builder build args")} == {
        "builder selected": "", "builder dockerfile path": "docker/Dockerfile.web",
        "builder build args": "NODE_ENV,PIP_INDEX_URL"}

    rc, _, err = run("builder-dockerfile:set", APP, "dockerfile-path", "../etc/Dockerfile")
    assert (rc, err) == (2, "error: invalid dockerfile-path '../etc/Dockerfile': it leaves the repository\n")
    rc, _, err = run("builder-dockerfile:set", APP, "build-args", "A,1B")
    assert rc == 2 and err.startswith("error: invalid config key '1B'")
    rc, _, err = run("builder-dockerfile:set", APP, "context", "x")
    assert (rc, err) == (2, "error: unknown builder-dockerfile property 'context': use dockerfile-path or build-args\n")

    assert run("builder-dockerfile:set", APP, "dockerfile-path")[1] == "-----> Unset dockerfile-path for myapp\n"
    assert run("builder-dockerfile:set", APP, "build-args", "")[1] == "-----> Unset build-args for myapp\n"
    assert json.loads(run("builder-dockerfile:report", APP, "--format", "json")[1]) == {
        "dockerfile path": "Dockerfile", "build args": ""}


def test_help_loads(run) -> None:
    for name in ("stack:build", "builder:set", "builder:report", "builder-dockerfile:set",
                 "builder-dockerfile:report"):
        rc, out, err = run(name, "--help")
        assert rc == 0, err
        assert "Usage:" in out
