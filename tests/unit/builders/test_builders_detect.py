"""Builder detection (SPEC "Deploys"): a table of every rule, forced selection, and unavailable builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.plugin import register_builders
from hooks.detect import detect_builder, order
from pushdock.builder import DETECTION_ORDER
from pushdock.errors import BuildFailed

ALL = register_builders()


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_order_is_data_and_every_builder_has_a_rule() -> None:
    assert DETECTION_ORDER == ("dockerfile", "pack", "herokuish")
    assert order(frozenset(ALL)) == list(DETECTION_ORDER)
    assert order(frozenset({"zeta", "herokuish", "alpha", "dockerfile"})) == ["dockerfile", "herokuish", "alpha", "zeta"]


# (files in the tree, app env, forced, expected builder, expected reason)
CASES = [
    ({"Dockerfile": "FROM x"}, {}, None, "dockerfile", "Dockerfile found"),
    ({"Dockerfile": "FROM x", "Procfile": "web: x", "requirements.txt": ""}, {}, None, "dockerfile",
     "Dockerfile found"),
    ({"Dockerfile": "FROM x", ".buildpacks": "https://x/y.git"}, {}, None, "herokuish", ".buildpacks found"),
    ({"Dockerfile": "FROM x"}, {"BUILDPACK_URL": "https://x/y.git"}, None, "herokuish", "BUILDPACK_URL is set"),
    ({"Dockerfile": "FROM x", ".env": "export BUILDPACK_URL='https://x/y.git'\n"}, {}, None, "herokuish",
     "BUILDPACK_URL is set in .env"),
    ({"Dockerfile": "FROM x"}, {"BUILDPACK_URL": "  "}, None, "dockerfile", "Dockerfile found"),
    ({"Dockerfile": "FROM x", ".env": "BUILDPACK_URL=\nOTHER=1\n"}, {}, None, "dockerfile", "Dockerfile found"),
    ({"Dockerfile": "FROM x", "project.toml": ""}, {}, None, "pack", "project.toml found"),
    ({"project.toml": ""}, {}, None, "pack", "project.toml found"),
    # SPEC order: project.toml selects pack before the herokuish fallback is considered.
    ({"project.toml": "", ".buildpacks": "x"}, {}, None, "pack", "project.toml found"),
    ({"requirements.txt": "", "Procfile": "web: x"}, {}, None, "herokuish", "no Dockerfile found"),
    ({}, {}, None, "herokuish", "no Dockerfile found"),
    ({".buildpacks": "x"}, {}, None, "herokuish", ".buildpacks found"),
    ({"dockerfile": "FROM x"}, {}, None, "herokuish", "no Dockerfile found"),  # the name is case-sensitive
    ({"Dockerfile/x": "FROM x"}, {}, None, "herokuish", "no Dockerfile found"),  # a directory is not one
    ({"requirements.txt": ""}, {}, "dockerfile", "dockerfile", "selected with builder:set"),
    ({"Dockerfile": "FROM x"}, {}, "pack", "pack", "selected with builder:set"),
    ({"Dockerfile": "FROM x"}, {}, " herokuish ", "herokuish", "selected with builder:set"),
    ({"Dockerfile": "FROM x"}, {}, "", "dockerfile", "Dockerfile found"),  # empty: detect
    ({"Dockerfile": "FROM x"}, {}, "  ", "dockerfile", "Dockerfile found"),
]


@pytest.mark.parametrize(("files", "env", "forced", "name", "reason"), CASES)
def test_detection_table(tmp_path: Path, files: dict[str, str], env: dict[str, str], forced: str | None,
                         name: str, reason: str) -> None:
    assert detect_builder(make_tree(tmp_path, files), env, forced, ALL) == (name, reason)


def test_configured_dockerfile_path_counts_as_the_dockerfile(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"docker/Dockerfile.web": "FROM x"})
    assert detect_builder(tree, {}, None, ALL)[0] == "herokuish"
    assert detect_builder(tree, {}, None, ALL, dockerfile="docker/Dockerfile.web") == (
        "dockerfile", "docker/Dockerfile.web found")


def test_a_third_party_builder_takes_part(tmp_path: Path) -> None:
    class Nix:
        def detect(self, build_dir: Path, env: dict[str, str], dockerfile: str) -> str | None:
            return "flake.nix found" if (build_dir / "flake.nix").is_file() else None

    registry = {"dockerfile": ALL["dockerfile"], "nix": Nix()}
    assert detect_builder(make_tree(tmp_path, {"flake.nix": ""}), {}, None, registry) == ("nix", "flake.nix found")
    assert detect_builder(make_tree(tmp_path, {"Dockerfile": "FROM x"}), {}, None, registry)[0] == "dockerfile"


NO_DOCKERFILE_BUILD = "no builder takes this app: pushdock builds apps with a Dockerfile today"


@pytest.mark.parametrize(
    ("files", "env", "forced", "message"),
    [
        ({"app.py": ""}, {}, None, NO_DOCKERFILE_BUILD),
        ({"Dockerfile": "FROM x", ".buildpacks": "x"}, {}, None, NO_DOCKERFILE_BUILD),
        ({"Dockerfile": "FROM x", "project.toml": ""}, {}, None, NO_DOCKERFILE_BUILD),
        ({"Dockerfile": "FROM x"}, {}, "pack",
         "selected with builder:set: pushdock builds apps with a Dockerfile today (the pack builder is not "
         "available yet)"),
        ({"Dockerfile": "FROM x"}, {}, "nixpacks",
         "selected with builder:set: pushdock builds apps with a Dockerfile today (the nixpacks builder is "
         "not available yet)"),
    ],
)
def test_unavailable_builder_is_a_one_line_build_failure(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], forced: str | None, message: str
) -> None:
    with pytest.raises(BuildFailed) as e:
        detect_builder(make_tree(tmp_path, files), env, forced, {"dockerfile": ALL["dockerfile"]})
    assert e.value.message == message
    assert "\n" not in str(e.value)


def test_other_available_builders_are_named(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="pushdock builds apps with dockerfile, pack today"):
        detect_builder(tmp_path, {}, None, {"pack": ALL["pack"], "dockerfile": ALL["dockerfile"]})
    with pytest.raises(BuildFailed, match="no builder is installed"):
        detect_builder(tmp_path, {}, None, {})
