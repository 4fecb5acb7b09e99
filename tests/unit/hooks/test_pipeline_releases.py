"""The release lifecycle of the pipeline: release phase order and failures, rollback, pruning, formation.

The scheduler, proxy and builder are fakes registered through the real bus (the docker-backed ones are
exercised in tests/e2e/test_releases.py); everything else — state, releases, the git repo — is real.
Pruning asks the real engine to remove images that do not exist there, which it answers quickly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from hooks import pipeline
from hooks.releases import plan_prune
from pushdock.bus import Bus
from pushdock.context import Context
from pushdock.errors import Conflict, DeployFailed, NotFound, UsageError
from pushdock.progress import Progress
from pushdock.releases import keep_count, parse_version
from pushdock.settings import Settings
from pushdock.specs import hookimpl
from pushdock.state import Identity, Release

APP = "demo"


class FakeScheduler:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_task: str | None = None
        self.fail_deploy = False

    def deploy(self, ctx, release, route, progress) -> None:
        self.calls.append(("deploy", release.number))
        if self.fail_deploy:
            raise DeployFailed(f"v{release.number} did not start")
        route([])

    def restart_process(self, ctx, release, route, progress, *, process) -> None:
        self.calls.append(("restart", process))

    def reconcile(self, ctx, release, route, progress) -> list[str]:
        self.calls.append(("reconcile", release.number))
        return []

    def run_task(self, ctx, release, command, progress, *, timeout, label, commit_to=None) -> None:
        self.calls.append((label, command))
        progress.detail(f"output of {label}")
        if label == self.fail_task:
            raise DeployFailed(f"{label} command failed with exit status 1")


class FakeProxy:
    def apply(self, ctx, app, domains, upstreams) -> None:
        pass


class FakeBuilder:
    name = "fake"

    def detect(self, build_dir, env, dockerfile) -> str:
        return "fake"

    def build(self, ctx, req, progress):
        from pushdock.builder import BuildResult

        return BuildResult(image=req.image, processes={"web": ""}, web_port=5000)


class Plugin:
    def __init__(self, sched: FakeScheduler) -> None:
        self.sched = sched

    @hookimpl
    def register_schedulers(self) -> dict[str, Any]:
        return {"fake": self.sched}

    @hookimpl
    def register_proxies(self) -> dict[str, Any]:
        return {"fake": FakeProxy()}

    @hookimpl
    def register_builders(self) -> dict[str, Any]:
        return {"fake": FakeBuilder()}

    @hookimpl
    def builder_detect(self, ctx, app, build_dir) -> str:
        return "fake"


@pytest.fixture
def sched() -> FakeScheduler:
    return FakeScheduler()


@pytest.fixture
def fctx(tmp_path: Path, sched: FakeScheduler) -> Context:
    settings = Settings(data_dir=tmp_path / "data", scheduler="fake", proxy="fake", proxy_port=8080)
    bus = Bus(tmp_path / "data" / "plugins", extra_plugins=(Plugin(sched),), entry_points=False)
    ctx = Context(settings=settings, identity=Identity(name="tester"), bus_override=bus)
    ctx.state.create_app(APP)
    return ctx


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress = Progress(self.lines.append)


def seed(ctx: Context, *statuses: str, image_of=lambda n: f"pushdock/demo:v{n}") -> None:
    """Releases v1..vN with these statuses (the last 'current' one is current)."""
    for n, status in enumerate(statuses, 1):
        r = Release(app=APP, number=n, image=image_of(n), env={"N": str(n)}, processes={"web": "", "release": "mig"},
                    formation={"web": n}, status=status)
        ctx.state.save_release(r)
        if status == "current":
            ctx.state.set("releases", APP, "current", str(n))


def push(ctx: Context, git_repo, files: dict[str, str]) -> str:
    work = git_repo(files)
    bare = ctx.state.repo_path(APP)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "main"], check=True, env=git_repo.env,
                   capture_output=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=git_repo.env,
                          capture_output=True, text=True).stdout.strip()


def test_push_runs_predeploy_release_then_swap_then_postdeploy(fctx, sched, git_repo) -> None:
    app_json = ('{"scripts": {"dokku": {"predeploy": "echo pre", "postdeploy": "echo post"}},'
                ' "formation": {"web": {"quantity": 2}, "worker": {"quantity": 1}}}')
    sha = push(fctx, git_repo, {"Procfile": "web: serve\nworker: work\nrelease: migrate\n", "app.json": app_json})
    out = Lines()
    r = pipeline.deploy_push(fctx, APP, sha, out.progress, branch="main")
    assert [c[0] for c in sched.calls] == ["predeploy", "release", "deploy", "postdeploy"]
    assert r.formation == {"web": 2, "worker": 1}  # app.json formation on the first deploy
    assert r.scripts == {"predeploy": "echo pre", "postdeploy": "echo post"}
    assert "       output of release" in out.lines

    # a scale change is not a new image or env: no release phase
    sched.calls.clear()
    pipeline.new_release(fctx, APP, why="ps:scale web=1", formation={"web": 1, "worker": 1})
    assert sched.calls == [("deploy", 2)]
    # a config change is: the release phase runs again
    sched.calls.clear()
    pipeline.new_release(fctx, APP, why="config:set X", env={"X": "1"})
    assert [c[0] for c in sched.calls] == ["predeploy", "release", "deploy", "postdeploy"]
    # app.json's formation gives quantities: every deploy takes its counts (Dokku's rule), not the stored ones
    sched.calls.clear()
    r = pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    assert r.formation == {"web": 2, "worker": 1} and r.number == 4 and r.formation_fixed
    assert "formation key of its app.json (web=2 worker=1)" in (pipeline.scale_refusal(fctx, APP) or "")


def test_a_formation_without_quantities_leaves_scaling_to_ps_scale(fctx, sched, git_repo) -> None:
    sha = push(fctx, git_repo, {"Procfile": "web: serve\nworker: work\n",
                                "app.json": '{"formation": {"worker": {"max_parallel": 1}}}'})
    r = pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    assert not r.formation_fixed and pipeline.scale_refusal(fctx, APP) is None
    pipeline.new_release(fctx, APP, why="ps:scale worker=2", formation={"web": 1, "worker": 2})
    r = pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    assert r.formation == {"web": 1, "worker": 2}


def test_release_phase_failure_keeps_the_old_release(fctx, sched, git_repo) -> None:
    sha = push(fctx, git_repo, {"Procfile": "web: serve\nrelease: migrate\n"})
    pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    pipeline.new_release(fctx, APP, why="config:set A", env={"A": "1"})
    sched.fail_task = "release"
    sched.calls.clear()
    with pytest.raises(DeployFailed, match="release command failed"):
        pipeline.new_release(fctx, APP, why="config:set B", env={"A": "1", "B": "2"})
    assert sched.calls == [("release", "migrate")]  # nothing new started
    assert fctx.state.current_release(APP).number == 2
    assert fctx.state.get_release(APP, 3).status == "failed"
    assert fctx.state.get_env(APP) == {"A": "1"}


def test_postdeploy_failure_fails_the_push_not_undone(fctx, sched, git_repo) -> None:
    sha = push(fctx, git_repo, {"app.json": '{"scripts": {"dokku": {"postdeploy": "false"}}}'})
    sched.fail_task = "postdeploy"
    out = Lines()
    with pytest.raises(DeployFailed, match=r"^postdeploy failed \(postdeploy command failed with exit status 1\): "
                                           r"the new release v1 keeps serving$"):
        pipeline.deploy_push(fctx, APP, sha, out.progress, branch="main")
    assert fctx.state.current_release(APP).number == 1
    assert [e["action"] for e in fctx.state.read_events()[-2:]] == ["postdeploy", "deploy"]

    # a config change applies and serves: the failure is a warning there, the command records the change
    r = pipeline.new_release(fctx, APP, why="config:set A", env={"A": "1"}, progress=out.progress)
    assert r is not None and r.status == "current" and fctx.state.get_env(APP) == {"A": "1"}
    assert any(line.endswith("warning: postdeploy failed (postdeploy command failed with exit status 1): the new "
                             "release v2 keeps serving") for line in out.lines)


def test_unknown_type_in_app_json_formation_fails_before_anything_starts(fctx, sched, git_repo) -> None:
    sha = push(fctx, git_repo, {"app.json": '{"formation": {"worker": {"quantity": 1}}}'})
    with pytest.raises(DeployFailed, match=r"app\.json formation names process type 'worker'"):
        pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    assert sched.calls == []


def test_bad_app_json_fails_the_push(fctx, sched, git_repo) -> None:
    sha = push(fctx, git_repo, {"app.json": '{"healthchecks": {"web": [{"path": "health"}]}}'})
    with pytest.raises(UsageError, match=r"healthchecks\.web\[0\]\.path must start with '/'"):
        pipeline.deploy_push(fctx, APP, sha, Lines().progress, branch="main")
    assert sched.calls == [] and fctx.state.list_releases(APP) == []


def test_rollback_deploys_image_env_formation_of_the_target(fctx, sched) -> None:
    seed(fctx, "superseded", "superseded", "current")
    r = pipeline.rollback(fctx, APP, None, Lines().progress)
    assert (r.number, r.image, r.env, r.formation, r.why) == (4, "pushdock/demo:v2", {"N": "2"}, {"web": 2},
                                                              "rollback to v2")
    assert fctx.state.get_env(APP) == {"N": "2"} and fctx.state.get_formation(APP) == {"web": 2}
    assert [c[0] for c in sched.calls] == ["release", "deploy"]  # a new image: the release phase runs
    r = pipeline.rollback(fctx, APP, 1, Lines().progress)
    assert (r.number, r.image) == (5, "pushdock/demo:v1")


@pytest.mark.parametrize(("statuses", "target", "error", "message"), [
    (("superseded", "current"), 9, NotFound, "has no release v9"),
    (("failed", "current"), 1, Conflict, "v1 failed to deploy"),
    (("superseded", "current"), 2, Conflict, "v2 is the current release"),
    (("failed", "current"), None, NotFound, "no earlier successful release than v2"),
    (("pending", "current"), 1, Conflict, "never finished deploying"),
])
def test_rollback_refusals_change_nothing(fctx, sched, statuses, target, error, message) -> None:
    seed(fctx, *statuses)
    before = fctx.state.list_releases(APP)
    with pytest.raises(error, match=message):
        pipeline.rollback(fctx, APP, target, Lines().progress)
    assert fctx.state.list_releases(APP) == before and sched.calls == []


def test_rollback_to_a_pruned_release_says_pruned(fctx) -> None:
    seed(fctx, "superseded", "current")
    fctx.state.save_release(fctx.state.get_release(APP, 1).with_(pruned=True))
    with pytest.raises(Conflict, match=r"v1 was pruned: its image is gone \(releases keep the last 5 images"):
        pipeline.rollback(fctx, APP, 1, Lines().progress)


def test_plan_prune_keeps_the_last_n_successful_and_shared_images() -> None:
    def r(n: int, status: str, image: str | None = None) -> Release:
        return Release(APP, n, image or f"img:v{n}", {}, {}, {}, status=status)

    # v5 is a config change of v4 (same image); v6 failed; v7 current
    rs = [r(1, "superseded"), r(2, "superseded"), r(3, "failed"), r(4, "superseded"),
          r(5, "superseded", "img:v4"), r(6, "failed"), r(7, "current"), r(8, "pending")]
    marked, images = plan_prune(rs, 2)
    assert [m.number for m in marked] == [6, 3, 2, 1]  # v4's image is still used by v5: v4 stays reachable
    assert images == ["img:v1", "img:v2", "img:v3", "img:v6"]
    marked, images = plan_prune(rs, 10)
    assert [m.number for m in marked] == [6, 3] and images == ["img:v3", "img:v6"]
    # already pruned ones are not marked again
    again, _ = plan_prune([x.with_(pruned=True) if x.number < 3 else x for x in rs], 2)
    assert [m.number for m in again] == [6, 3]


def test_deploys_prune_old_releases(fctx) -> None:
    fctx.state.set("releases", APP, "keep", "2")
    seed(fctx, "current")
    for n in range(3):
        pipeline.new_release(fctx, APP, why=f"config {n}", env={"N": f"x{n}"})
    flags = {r.number: r.pruned for r in fctx.state.list_releases(APP)}
    assert flags == {1: False, 2: False, 3: False, 4: False}  # config changes share v1's image: none gone
    pipeline.rollback(fctx, APP, 2)
    assert fctx.state.current_release(APP).number == 5
    assert keep_count(fctx.state, APP) == 2


def test_restart_one_process_type(fctx, sched) -> None:
    seed(fctx, "current")
    pipeline.restart(fctx, APP, process="web")
    assert sched.calls == [("restart", "web")]
    with pytest.raises(UsageError, match=r"runs no worker process \(formation: web=1\)"):
        pipeline.restart(fctx, APP, process="worker")


def test_reconcile_marks_interrupted_releases_failed(fctx, sched) -> None:
    seed(fctx, "current", "pending")
    messages = pipeline.reconcile_all(fctx)
    assert "demo: v2 was interrupted mid-deploy: marked failed" in messages
    assert fctx.state.get_release(APP, 2).status == "failed"
    assert sched.calls == [("reconcile", 1)]


def test_the_next_deploy_marks_a_release_its_dead_process_left_pending_failed(fctx, sched) -> None:
    """A worker killed mid-deploy (OOM, a reboot) leaves vN pending; the next deploy holds the lock, so no deploy
    is under way: it marks vN failed without waiting for serve's next start."""
    seed(fctx, "current", "pending")
    pipeline.new_release(fctx, APP, why="config", env={"N": "1"})
    assert fctx.state.get_release(APP, 2).status == "failed"
    assert fctx.state.get_release(APP, 2).why.endswith("(interrupted)")
    assert fctx.state.current_release(APP).number == 3


@pytest.mark.parametrize(("text", "number"), [("v3", 3), ("12", 12), ("V7", 7)])
def test_parse_version(text: str, number: int) -> None:
    assert parse_version(text) == number


@pytest.mark.parametrize("text", ["v", "v0", "three", "v-1", "v1.2"])
def test_parse_bad_version(text: str) -> None:
    with pytest.raises(UsageError, match="expected a release such as v3"):
        parse_version(text)


def test_mounts_are_a_new_release_that_runs_the_release_phase_and_a_rollback_keeps_them(fctx, sched) -> None:
    """A storage change is release vN+1 of the same image; the mounts are stored only once it serves; a rollback
    runs the target's code with the app's mounts as they are now (data is not versioned with the code)."""
    seed(fctx, "superseded", "current")
    fctx.state.set_json("storage", APP, "mounts", ["old:/old"])
    sched.fail_deploy = True
    with pytest.raises(DeployFailed):
        pipeline.new_release(fctx, APP, why="storage:mount up:/data", mounts=["up:/data"])
    assert fctx.state.get_json("storage", APP, "mounts") == ["old:/old"]  # nothing half-applied
    sched.fail_deploy, sched.calls[:] = False, []
    r = pipeline.new_release(fctx, APP, why="storage:mount up:/data", mounts=["up:/data"])
    assert (r.number, r.image, r.mounts) == (4, "pushdock/demo:v2", ["up:/data"])
    assert [c[0] for c in sched.calls] == ["release", "deploy"]  # what processes see changed: release phase
    assert fctx.state.get_json("storage", APP, "mounts") == ["up:/data"]
    r = pipeline.new_release(fctx, APP, why="config:set", env={"N": "9"})
    assert r.mounts == ["up:/data"]
    r = pipeline.rollback(fctx, APP, 1, Lines().progress)
    assert (r.image, r.mounts) == ("pushdock/demo:v1", ["up:/data"])
