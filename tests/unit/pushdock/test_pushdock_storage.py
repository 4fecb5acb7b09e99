"""The storage model: mount specs, storage directories, the role rules and what the engine is given."""

from __future__ import annotations

import os

import pytest

from pushdock import storage
from pushdock.context import Context
from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, UsageError
from pushdock.state import Identity, Release
from pushdock.storage import Mount


@pytest.mark.parametrize(("spec", "mount"), [
    ("uploads:/app/uploads", Mount("uploads", "/app/uploads")),
    ("uploads:/app/uploads/:ro", Mount("uploads", "/app/uploads", read_only=True)),
    ("uploads:/data:rw", Mount("uploads", "/data")),
    ("/srv//shared/:/shared", Mount("/srv/shared", "/shared")),
    ("My_dir.2:/etc-not/x", Mount("My_dir.2", "/etc-not/x")),
])
def test_specs_parse_to_their_plain_form(spec: str, mount: Mount) -> None:
    assert storage.parse(spec) == mount
    assert storage.parse(mount.spec) == mount


@pytest.mark.parametrize(("spec", "reason"), [
    ("up:/", "container path / may not be mounted over"),
    ("up:/app", "container path /app may not be mounted over (it would hide the app's files)"),
    ("up://app//", "container path /app may not be mounted over"),
    ("up:/usr", "container path /usr may not be mounted over"),
    ("up:/proc", "container path /proc is inside /proc"),
    ("up:/sys/fs", "container path /sys/fs is inside /sys"),
    ("up:/dev/shm", "container path /dev/shm is inside /dev"),
    ("up:/etc/passwd", "container path /etc/passwd is inside /etc"),
    ("up:data", "container path 'data' must be an absolute path"),
    ("up:/a/./b", "container path '/a/./b' must not contain '.' or '..'"),
    ("up:/a/../etc", "container path '/a/../etc' must not contain '.' or '..'"),
    ("./up:/x", "relative paths are not accepted"),
    ("up/sub:/x", "relative paths are not accepted"),
    ("..:/x", "relative paths are not accepted"),
    ("a..b:/x", "relative paths are not accepted"),
    ("/srv/../etc:/x", "host path '/srv/../etc' must not contain '.' or '..'"),
    ("up:/x:rx", "expected SOURCE:CONTAINER_PATH"),
    ("up:/x:ro:z", "expected SOURCE:CONTAINER_PATH"),
    (":/x", "expected SOURCE:CONTAINER_PATH"),
    ("up:", "expected SOURCE:CONTAINER_PATH"),
    ("up", "expected SOURCE:CONTAINER_PATH"),
    ("up:/x\n", "expected SOURCE:CONTAINER_PATH"),
    ("", "expected SOURCE:CONTAINER_PATH"),
])
def test_bad_specs_are_one_line_errors(spec: str, reason: str) -> None:
    with pytest.raises(UsageError) as e:
        storage.parse(spec)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_chown_options() -> None:
    assert storage.parse_chown("herokuish") == (32767, 32767)
    assert storage.parse_chown("root") == (0, 0)
    assert storage.parse_chown("false") is None
    assert storage.parse_chown("1000") == (1000, 1000)
    assert storage.parse_chown("1000:50") == (1000, 50)
    for bad in ("bob", "1:2:3", "-1", "99999999999", ""):
        with pytest.raises(UsageError, match="--chown must be"):
            storage.parse_chown(bad)


def test_ensure_directory_is_idempotent_and_owned(ctx: Context) -> None:
    path = storage.ensure_directory(ctx.state, "uploads", (32767, 32767))
    assert path == ctx.settings.data_dir.absolute() / "storage" / "uploads" and path.is_dir()
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (32767, 32767)
    (path / "kept").write_text("x")
    assert storage.ensure_directory(ctx.state, "uploads", (1000, 1000)) == path
    assert (path / "kept").read_text() == "x" and os.stat(path).st_uid == 1000
    (ctx.state.storage_root / "link").symlink_to(path)
    with pytest.raises(Conflict, match="is not a directory"):
        storage.ensure_directory(ctx.state, "link", None)
    assert not storage.directory_exists(ctx.state, "link")


def test_a_storage_directory_written_as_a_host_path_is_that_directory(ctx: Context) -> None:
    root = ctx.state.storage_root
    assert storage.parse_input(ctx.state, f"{root}/up:/x") == Mount("up", "/x")
    assert storage.parse_input(ctx.state, f"{root}/up/sub:/x") == Mount(f"{root}/up/sub", "/x")
    assert storage.parse_input(ctx.state, f"{root}:/x") == Mount(str(root), "/x")


def test_adding_and_removing(ctx: Context) -> None:
    mounts = storage.added([], Mount("up", "/data"))
    with pytest.raises(Conflict, match="up:/data is mounted already"):
        storage.added(mounts, Mount("up", "/data", read_only=True))
    with pytest.raises(Conflict, match="/data is already the mount point of up"):
        storage.added(mounts, Mount("/srv", "/data"))
    with pytest.raises(NotFound, match="web has no mount up:/other"):
        storage.removed("web", mounts, Mount("up", "/other"))
    assert storage.removed("web", mounts, Mount("up", "/data", read_only=True)) == []


def test_roles_sources_and_data_of_other_apps(ctx: Context, tmp_path) -> None:
    for app in ("mine", "theirs"):
        ctx.state.create_app(app)
    storage.ensure_directory(ctx.state, "up", None)
    storage.ensure_directory(ctx.state, "shared", None)
    storage.remember_users(ctx.state, "theirs", [Mount("shared", "/data")])
    admin = ctx
    deployer = Context(settings=ctx.settings, identity=Identity("ci", role="deployer", apps=("mine",)))

    storage.check_change(admin, "mine", [], [Mount(str(tmp_path), "/host")])
    with pytest.raises(Forbidden, match="may not mount host paths: admin only"):
        storage.check_change(deployer, "mine", [], [Mount(str(tmp_path), "/host")])
    with pytest.raises(Forbidden, match="may not mount host paths"):  # removing one too
        storage.check_change(deployer, "mine", [Mount(str(tmp_path), "/host")], [])
    storage.check_change(deployer, "mine", [Mount(str(tmp_path), "/host")],
                         [Mount(str(tmp_path), "/host"), Mount("up", "/up")])  # kept as is: fine
    with pytest.raises(NotFound, match="no storage directory nope"):
        storage.check_change(admin, "mine", [], [Mount("nope", "/x")])
    with pytest.raises(NotFound, match="host path /no/such does not exist"):
        storage.check_change(admin, "mine", [], [Mount("/no/such", "/x")])
    with pytest.raises(Forbidden, match="storage directory shared holds data of an app ci has no access to"):
        storage.check_change(deployer, "mine", [], [Mount("shared", "/x")])
    storage.check_change(admin, "mine", [], [Mount("shared", "/x")])
    with pytest.raises(UsageError, match="/x is mounted twice"):
        storage.check_change(admin, "mine", [], [Mount("up", "/x"), Mount("shared", "/x")])

    storage.remember_users(ctx.state, "mine", [Mount("up", "/up")])
    storage.renamed(ctx.state, "mine", "ours")
    assert storage.users(ctx.state, "up") == {"ours"}


def test_engine_arguments(ctx: Context) -> None:
    storage.ensure_directory(ctx.state, "up", None)
    release = Release(app="web", number=1, image="i", env={}, processes={}, formation={},
                      mounts=["up:/data", "/srv:/srv:ro"])
    root = ctx.state.storage_root
    assert storage.binds(ctx.state, release) == {"binds": [f"{root}/up:/data:rw", "/srv:/srv:ro"]}
    [a, b] = storage.swarm_mounts(ctx.state, release)
    assert (a["Source"], a["Target"], a["Type"], a["ReadOnly"]) == (f"{root}/up", "/data", "bind", False)
    assert (b["Source"], b["ReadOnly"]) == ("/srv", True)
    assert storage.binds(ctx.state, release.with_(mounts=[])) == {}
    assert storage.swarm_mounts(ctx.state, release.with_(mounts=[])) is None
    (root / "up").rmdir()  # a directory that vanished is an error, not a fresh root-owned one
    with pytest.raises(PushdockError, match="storage directory up is gone: recreate it with storage:ensure-directory"):
        storage.binds(ctx.state, release)


def test_releases_written_before_mounts_existed_load(ctx: Context) -> None:
    import json

    ctx.state.create_app("old")
    path = ctx.state.path("data", "releases", "old", "v1.json")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"app": "old", "number": 1, "image": "i", "env": {}, "processes": {},
                                "formation": {}}))
    assert ctx.state.get_release("old", 1).mounts == []
