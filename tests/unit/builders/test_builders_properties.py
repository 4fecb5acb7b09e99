"""Builder properties: dockerfile-path and build-args validation, on the way in and at build time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builders import properties as p
from pushdock.context import Context
from pushdock.errors import BuildFailed, UsageError

APP = "myapp"


@pytest.mark.parametrize(
    ("value", "stored"),
    [("Dockerfile", "Dockerfile"), ("docker/Dockerfile.web", "docker/Dockerfile.web"),
     ("./docker//Dockerfile", "docker/Dockerfile"), ("a/../Dockerfile.prod", "Dockerfile.prod"),
     (" sub/Dockerfile ", "sub/Dockerfile")],
)
def test_relative_paths_are_normalised(value: str, stored: str) -> None:
    assert p.check_relative_path(value) == stored


@pytest.mark.parametrize("value", ["/etc/passwd", "../Dockerfile", "a/../../Dockerfile", ".", "a/..",
                                   "..\\Dockerfile", "   "])
def test_paths_leaving_the_tree_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match="invalid dockerfile-path"):
        p.check_relative_path(value)


def test_set_and_clear_dockerfile_path(ctx: Context) -> None:
    assert p.set_dockerfile_path(ctx.state, APP, "./docker/Dockerfile") == "docker/Dockerfile"
    assert p.get_dockerfile_path(ctx.state, APP) == "docker/Dockerfile"
    assert p.set_dockerfile_path(ctx.state, APP, "") is None
    assert p.get_dockerfile_path(ctx.state, APP) is None


def test_resolve_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile.web").write_text("FROM x\n")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert p.resolve_dockerfile(tmp_path, None) == "Dockerfile"
    assert p.resolve_dockerfile(tmp_path, "docker/Dockerfile.web") == "docker/Dockerfile.web"
    with pytest.raises(BuildFailed, match=r"^invalid dockerfile-path 'docker/nope': no such file"):
        p.resolve_dockerfile(tmp_path, "docker/nope")
    with pytest.raises(BuildFailed, match="invalid dockerfile-path 'docker': no such file"):
        p.resolve_dockerfile(tmp_path, "docker")
    with pytest.raises(BuildFailed, match="leaves the repository"):
        p.resolve_dockerfile(tmp_path, "../Dockerfile")


def test_resolve_dockerfile_refuses_a_symlink_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("FROM x\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(outside, tree / "Dockerfile")
    with pytest.raises(BuildFailed, match="leaves the repository"):
        p.resolve_dockerfile(tree, None)
    (tree / "real").write_text("FROM x\n")
    os.symlink("real", tree / "inside")
    assert p.resolve_dockerfile(tree, "inside") == "real"


def test_missing_default_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match=r"^no Dockerfile found"):
        p.resolve_dockerfile(tmp_path, None)


@pytest.mark.parametrize(
    ("value", "keys"),
    [("A,B", ["A", "B"]), (" A , B ,, A", ["A", "B"]), ("NODE_ENV PIP_INDEX_URL", ["NODE_ENV", "PIP_INDEX_URL"]),
     ("", []), (",", [])],
)
def test_parse_build_args(value: str, keys: list[str]) -> None:
    assert p.parse_build_args(value) == keys


@pytest.mark.parametrize("value", ["1A", "A-B", "A,B=1", "A;rm"])
def test_build_args_must_be_config_keys(value: str) -> None:
    with pytest.raises(UsageError, match="invalid config key"):
        p.parse_build_args(value)


def test_set_get_and_clear_build_args(ctx: Context) -> None:
    assert p.get_build_args(ctx.state, APP) == []
    assert p.set_build_args(ctx.state, APP, "B,A") == ["B", "A"]
    assert ctx.state.get_json(p.DOCKERFILE, APP, p.BUILD_ARGS) == ["B", "A"]
    assert p.get_build_args(ctx.state, APP) == ["B", "A"]
    assert p.set_build_args(ctx.state, APP, "") == []
    assert ctx.state.get(p.DOCKERFILE, APP, p.BUILD_ARGS) is None


@pytest.mark.parametrize("raw", ["not json", '"A"', '["A", 1]', '["bad key"]', "{}"])
def test_malformed_build_args_fail_the_build(ctx: Context, raw: str) -> None:
    ctx.state.set(p.DOCKERFILE, APP, p.BUILD_ARGS, raw)
    with pytest.raises(BuildFailed, match="invalid build-args property"):
        p.get_build_args(ctx.state, APP)


def test_build_args_take_listed_keys_present_in_env() -> None:
    env = {"A": "1", "B": "two words", "SECRET": "x"}
    assert p.build_args(["A", "B", "MISSING"], env) == {"A": "1", "B": "two words"}


def test_selected(ctx: Context) -> None:
    assert p.get_selected(ctx.state, APP) is None
    assert p.set_selected(ctx.state, APP, "pack") == "pack"
    assert p.get_selected(ctx.state, APP) == "pack"
    assert p.set_selected(ctx.state, APP, "") is None
    assert p.get_selected(ctx.state, APP) is None
    with pytest.raises(UsageError, match="unknown builder 'docker': use one of dockerfile, herokuish, pack"):
        p.set_selected(ctx.state, APP, "docker")
    assert p.set_selected(ctx.state, APP, "nixpacks", known=["nixpacks"]) == "nixpacks"


def test_set_dockerfile_property_rejects_unknown_keys(ctx: Context) -> None:
    with pytest.raises(UsageError, match="use dockerfile-path or build-args"):
        p.set_dockerfile_property(ctx.state, APP, "context", "x")
