"""The herokuish builder's pure parts: which buildpacks run and why, bin/release YAML, config_vars as defaults,
and the shipped buildpacks' bin/detect and bin/release scripts (run for real with bash on this host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builders import BUILDPACK_ORDER
from builders import properties as p
from builders.buildpack_source import SHIPPED_DIR
from builders.herokuish import LIST_HEADER, detect_shipped, parse_release, profile_script, select, write_app_list
from builders.plugin import register_builders
from hooks.detect import detect_builder
from pushdock.context import Context
from pushdock.errors import BuildFailed

APP = "myapp"
APPS = Path(__file__).resolve().parents[2] / "apps"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_order_is_data_and_every_shipped_buildpack_is_complete() -> None:
    assert BUILDPACK_ORDER == ("python", "nodejs", "static", "procfile")
    assert sorted(BUILDPACK_ORDER) == sorted(d.name for d in SHIPPED_DIR.iterdir() if d.is_dir())
    for name in BUILDPACK_ORDER:
        for script in ("detect", "compile", "release"):
            path = SHIPPED_DIR / name / "bin" / script
            assert path.stat().st_mode & 0o111, path  # executable: the package data keeps modes


def test_selection_order(ctx: Context, tmp_path: Path) -> None:
    ctx.state.create_app(APP)
    p.add_buildpack(ctx.state, APP, "https://example.com/listed.git")
    both = tree(tmp_path / "a", {".buildpacks": "https://example.com/dot.git\n./local\n"})
    s = select(ctx.state, APP, both, {"BUILDPACK_URL": "https://example.com/env.git"})
    assert (s.source, s.detect, [r.location for r in s.refs]) == (
        ".buildpacks", False, ["https://example.com/dot.git", "local"])
    plain = tree(tmp_path / "b", {"app.py": ""})
    s = select(ctx.state, APP, plain, {"BUILDPACK_URL": "https://example.com/env.git#v2"})
    assert (s.source, s.refs[0].ref) == ("BUILDPACK_URL", "v2")
    dotenv = tree(tmp_path / "c", {".env": "export BUILDPACK_URL='https://example.com/dotenv.git'\n"})
    assert select(ctx.state, APP, dotenv, {}).refs[0].location == "https://example.com/dotenv.git"
    s = select(ctx.state, APP, plain, {})
    assert (s.source, s.describe()) == ("buildpacks:list", "https://example.com/listed.git (from buildpacks:list)")
    p.clear_buildpacks(ctx.state, APP)
    s = select(ctx.state, APP, plain, {})
    assert s.detect and [r.location for r in s.refs] == list(BUILDPACK_ORDER)


def test_a_comment_only_buildpacks_file_falls_through(ctx: Context, tmp_path: Path) -> None:
    ctx.state.create_app(APP)
    assert select(ctx.state, APP, tree(tmp_path, {".buildpacks": "# nothing\n"}), {}).source == "detection"


@pytest.mark.parametrize(("files", "env", "message"), [
    ({".buildpacks": "pushdock/python\npython\n"}, {}, ".buildpacks line 2: not a buildpack URL or folder: 'python'"),
    ({}, {"BUILDPACK_URL": "ftp://x/y"}, "BUILDPACK_URL: not a buildpack URL or folder: 'ftp://x/y'"),
])
def test_bad_references_are_one_line(ctx: Context, tmp_path: Path, files, env, message: str) -> None:
    ctx.state.create_app(APP)
    with pytest.raises(BuildFailed) as e:
        select(ctx.state, APP, tree(tmp_path, files), env)
    assert e.value.message.startswith(message)


def test_the_app_list_is_written_at_post_extract_and_beats_a_dockerfile(ctx: Context, tmp_path: Path) -> None:
    ctx.state.create_app(APP)
    build = tree(tmp_path / "t", {"Dockerfile": "FROM x\n"})
    assert not write_app_list(ctx.state, APP, build, {})  # no list: nothing written
    p.add_buildpack(ctx.state, APP, "pushdock/static")
    assert not write_app_list(ctx.state, APP, build, {"BUILDPACK_URL": "https://example.com/x.git"})
    assert write_app_list(ctx.state, APP, build, {})
    assert (build / ".buildpacks").read_text() == f"{LIST_HEADER}\npushdock/static\n"
    assert detect_builder(build, {}, None, register_builders()) == ("herokuish", ".buildpacks found")
    assert select(ctx.state, APP, build, {}).source == "buildpacks:list"
    committed = tree(tmp_path / "u", {".buildpacks": "pushdock/python\n"})
    assert not write_app_list(ctx.state, APP, committed, {})  # the committed file wins
    assert committed.joinpath(".buildpacks").read_text() == "pushdock/python\n"


# -- bin/release ------------------------------------------------------------------------------------
def test_parse_release() -> None:
    text = """---
addons: []
config_vars:
  PYTHONUNBUFFERED: "1"
  GREETING: 'it''s'
  bad-key: x
default_process_types:
  web: gunicorn app:app --bind 0.0.0.0:$PORT
  Worker: "python worker.py"
  bad name: x
"""
    assert parse_release(text) == (
        {"web": "gunicorn app:app --bind 0.0.0.0:$PORT", "worker": "python worker.py"},
        {"PYTHONUNBUFFERED": "1", "GREETING": "it's"},
    )
    assert parse_release("default_process_types: {web: python app.py, clock: python clock.py}\n")[0] == {
        "web": "python app.py", "clock": "python clock.py"}
    assert parse_release("") == ({}, {})
    assert parse_release("--- {}\n") == ({}, {})


def test_config_vars_are_defaults_the_app_config_overrides() -> None:
    script = profile_script({"A": "it's $HOME", "B": "2"})
    out = subprocess.run(["bash", "-c", f"B=mine; {script}\necho \"$A|$B\""], capture_output=True, text=True,
                         check=True).stdout
    assert out == "it's $HOME|mine\n"


# -- the shipped buildpacks' scripts ----------------------------------------------------------------
@pytest.mark.parametrize(("sample", "detected"), [
    ("buildpack-flask", "python"), ("buildpack-express", "nodejs"), ("buildpack-static", "static"),
    ("buildpack-procfile", "procfile"), ("buildpack-pack", "procfile"), ("e2e-web", None),
])
def test_detect_shipped_on_the_sample_apps(sample: str, detected: str | None) -> None:
    assert detect_shipped(APPS / sample) == detected


@pytest.mark.parametrize(("name", "files", "web"), [
    ("python", {"requirements.txt": ""}, None),
    ("python", {"requirements.txt": "", "app.py": ""}, "python app.py"),
    ("nodejs", {"package.json": "{}"}, "npm start"),
    ("static", {"index.html": ""}, 'exec python3 -m http.server "$PORT" --bind 0.0.0.0 --directory /app'),
    ("static", {"public/index.html": ""}, 'exec python3 -m http.server "$PORT" --bind 0.0.0.0 --directory /app/public'),
    ("procfile", {"Procfile": "web: x"}, None),
])
def test_release_scripts(tmp_path: Path, name: str, files: dict[str, str], web: str | None) -> None:
    out = subprocess.run([str(SHIPPED_DIR / name / "bin" / "release"), str(tree(tmp_path, files))],
                         capture_output=True, text=True, check=True).stdout
    assert parse_release(out)[0].get("web") == web


def test_app_json_buildpacks_come_after_the_app_list(ctx: Context, tmp_path: Path) -> None:
    ctx.state.create_app(APP)
    app_json = '{"buildpacks": [{"url": "pushdock/python"}, {"url": "https://example.com/x.git"}, {"nourl": 1}]}'
    build = tree(tmp_path / "a", {"app.json": app_json, "Dockerfile": "FROM x\n"})
    assert write_app_list(ctx.state, APP, build, {})
    s = select(ctx.state, APP, build, {})
    assert (s.source, [r.text for r in s.refs]) == ("app.json", ["pushdock/python", "https://example.com/x.git"])
    p.add_buildpack(ctx.state, APP, "pushdock/static")
    build = tree(tmp_path / "b", {"app.json": app_json})
    assert select(ctx.state, APP, build, {}).source == "buildpacks:list"
    p.clear_buildpacks(ctx.state, APP)
    for text in ("not json", '{"buildpacks": "x"}', "[]"):
        assert select(ctx.state, APP, tree(tmp_path / "c", {"app.json": text}), {}).source == "detection"


def test_app_json_buildpacks_are_read_through_comments_and_trailing_commas(tmp_path) -> None:
    from builders.herokuish import _app_json_urls

    (tmp_path / "app.json").write_text('{\n  // as Dokku reads it\n  "buildpacks": [{"url": "heroku/python"},],\n}\n')
    assert _app_json_urls(tmp_path) == ["heroku/python"]
