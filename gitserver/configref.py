"""`refs/meta/config`: an app's settings as a git history.

The ref's tree holds exactly two files, `env` and `pushdock.toml` (gitserver/settings_file.py). Two ways
move it, both under the app's lock and both by compare-and-swap on the ref:

- a `git push` to the ref: `read_commit` + `check` validate it as a whole (no side effects), then
  `apply` stores it and restarts the app as a new release (receive.py moves the ref afterwards);
- a command that changed settings fires `post_settings_change`; `record` renders the state into the two
  files and commits them on top of the ref (author: the caller; message: the command, without secret values).

Locking rule: `record` takes the app lock itself and the lock is not re-entrant (a second `flock` on the
same file from the same process waits for the first). Fire `post_settings_change` only AFTER releasing the
app lock; everything else here expects the caller to hold it.
"""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dulwich.graph import can_fast_forward
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.protocol import ZERO_SHA
from dulwich.refs import HEADREF, LOCAL_BRANCH_PREFIX, Ref
from dulwich.repo import Repo
from loguru import logger

from gitserver.settings_file import (
    ENV_FILE,
    SETTINGS_FILE,
    AppSettings,
    Builder,
    Checks,
    ConfigFileError,
    DockerOptions,
    Logs,
    Network,
    ResourceLimit,
    Storage,
    parse_env,
    parse_settings,
    render_env,
    render_settings,
)
from hooks import pipeline
from pushdock import docker_options, logship, networks, proxy_tuning, resources, storage
from pushdock.apps import authorize_domains
from pushdock.errors import Conflict, Forbidden, PushdockError, UsageError
from pushdock.state import APP_NAME, GLOBAL

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import State

CONFIG_REF = Ref(b"refs/meta/config")
MAX_FILE_BYTES = 1024 * 1024
KNOWN_BUILDERS = ("dockerfile", "herokuish", "pack")
COMMITTER = b"pushdock <pushdock@localhost>"
# The properties pushdock.toml maps to (besides env and formation): (plugin, property).
DOMAINS = ("domains", "list")
CHECK_FLAGS = {"disabled": ("checks", "disabled"), "skipped": ("checks", "skipped")}
CHECK_NUMBERS = {"wait_to_retire": ("checks", "wait-to-retire"), "stop_timeout": ("checks", "stop-timeout"),
                 "wait": ("checks", "wait")}
CHECK_TYPE = ("checks", "type")
SELECTED = ("builder", "selected")
DOCKERFILE_PATH = ("builder-dockerfile", "dockerfile-path")
DEPLOY_BRANCH = ("git", "deploy-branch")
RESOURCES = (resources.PLUGIN, resources.PROPERTY)
MOUNTS = (storage.PLUGIN, storage.PROPERTY)
LOG_SINK = ("logs", logship.PROP)
TUNING = (proxy_tuning.PLUGIN, proxy_tuning.PROPERTY)
DOCKER_OPTIONS = (docker_options.PLUGIN, docker_options.PROPERTY)
NETWORKS = tuple((networks.PLUGIN, phase) for phase in networks.PHASES)
PROPERTIES = (DOMAINS, *CHECK_FLAGS.values(), *CHECK_NUMBERS.values(), CHECK_TYPE, SELECTED, DOCKERFILE_PATH,
              DEPLOY_BRANCH, RESOURCES, MOUNTS, LOG_SINK, TUNING, DOCKER_OPTIONS, *NETWORKS)


@dataclass(frozen=True)
class AppConfig:
    """What refs/meta/config holds: the whole environment and the other settings."""

    env: dict[str, str]
    settings: AppSettings

    def files(self) -> dict[str, bytes]:
        return {ENV_FILE: render_env(self.env).encode(), SETTINGS_FILE: render_settings(self.settings).encode()}


# -- reading ---------------------------------------------------------------------------------------------
def _text(state: State, key: tuple[str, str], app: str) -> str | None:
    value = (state.get(key[0], app, key[1]) or "").strip()
    return value or None


def _number(state: State, key: tuple[str, str], app: str) -> int | None:
    value = _text(state, key, app)
    if value is not None and value.isdigit():
        return int(value)
    if value is not None:
        logger.warning("unreadable property left out of refs/meta/config", app=app, prop="/".join(key))
    return None


def from_state(state: State, app: str) -> AppConfig:
    """The app's current settings (never fails: stored values are rendered as they are)."""
    # one dict: spread separately, mypy would match a bool- or int-valued dict to `_fields_set`
    check_values: dict[str, Any] = {
        **{k: _text(state, key, app) not in (None, "0") for k, key in CHECK_FLAGS.items()},
        **{k: _number(state, key, app) for k, key in CHECK_NUMBERS.items()},
    }
    checks = Checks.model_construct(**check_values, type=_text(state, CHECK_TYPE, app))
    builder = Builder.model_construct(selected=_text(state, SELECTED, app),
                                      dockerfile_path=_text(state, DOCKERFILE_PATH, app))
    settings = AppSettings.model_construct(
        deploy_branch=_text(state, DEPLOY_BRANCH, app),
        domains=tuple(state.get_json(DOMAINS[0], app, DOMAINS[1], [])),
        scale=dict(state.get_formation(app) or {}), checks=checks, builder=builder,
        resources={k: ResourceLimit.model_construct(memory=v.memory, cpu=v.cpu)
                   for k, v in sorted(resources.stored(state, app).items())},
        storage=Storage.model_construct(mounts=tuple(storage.specs(storage.stored(state, app)))),
        logs=Logs.model_construct(vector_sink=logship.stored(state, app) or None),
        proxy=proxy_tuning.stored(state, app),
        docker_options=DockerOptions.model_construct(**_tuples(docker_options.stored(state, app))),
        network=_network(state, app),
    )
    return AppConfig(env=state.get_env(app), settings=settings)


def _tuples(options: dict[str, list[str]]) -> dict[str, Any]:
    """Lists as tuples, for `model_construct(**...)` (typed Any: its first parameter is `_fields_set`)."""
    return {p: tuple(v) for p, v in options.items()}


def _network(state: State, app: str) -> Network:
    got = networks.get(state, app)
    initial = got.get("initial-network") or []
    return Network.model_construct(attach_post_create=tuple(got.get("attach-post-create", [])),
                                   attach_post_deploy=tuple(got.get("attach-post-deploy", [])),
                                   initial_network=initial[0] if initial else None)


def read_commit(repo: Repo, sha: ObjectID) -> AppConfig:
    """Parse the config files of commit `sha`; ConfigFileError (one line) if the tree is not exactly them."""
    commit = repo[sha]
    if not isinstance(commit, Commit):
        raise ConfigFileError("refs/meta/config must point at a commit")
    tree = repo[commit.tree]
    assert isinstance(tree, Tree)
    blobs: dict[str, bytes] = {}
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "replace")
        if name not in (ENV_FILE, SETTINGS_FILE):
            raise ConfigFileError(f"unexpected file {name!r}: refs/meta/config holds only {ENV_FILE} and "
                                  f"{SETTINGS_FILE}")
        if not stat.S_ISREG(entry.mode):
            raise ConfigFileError(f"{name} must be a regular file")
        blob = repo[entry.sha]
        assert isinstance(blob, Blob)
        if len(blob.data) > MAX_FILE_BYTES:
            raise ConfigFileError(f"{name} is over {MAX_FILE_BYTES} bytes")
        blobs[name] = blob.data
    for name in (ENV_FILE, SETTINGS_FILE):
        if name not in blobs:
            raise ConfigFileError(f"{name} is missing (fetch refs/meta/config and edit it)")
    try:
        env_text, settings_text = blobs[ENV_FILE].decode(), blobs[SETTINGS_FILE].decode()
    except UnicodeDecodeError:
        raise ConfigFileError("the config files must be UTF-8") from None
    return AppConfig(env=parse_env(env_text), settings=parse_settings(settings_text))


def validate_push(ctx: Context, app: str, repo: Repo, old: ObjectID, new: ObjectID) -> AppConfig:
    """The settings of a commit pushed to the ref, if it may replace `old`; ConfigFileError (one line) if not."""
    if old != ZERO_SHA and not can_fast_forward(repo, old, new):
        raise ConfigFileError("refs/meta/config only moves forward: fetch it, commit on top, push again")
    cfg = _canonical_mounts(ctx.state, read_commit(repo, new))
    check(ctx, app, cfg)
    if ctx.identity.role != "admin" and cfg.settings.resources != from_state(ctx.state, app).settings.resources:
        raise ConfigFileError(f"{SETTINGS_FILE}: resources: only an admin may change resource limits")
    if ctx.identity.role != "admin" and cfg.settings.logs != from_state(ctx.state, app).settings.logs:
        raise ConfigFileError(f"{SETTINGS_FILE}: logs: only an admin may change where logs are shipped")
    admin_keys = proxy_tuning.admin_keys(from_state(ctx.state, app).settings.proxy, cfg.settings.proxy)
    if ctx.identity.role != "admin" and admin_keys:
        raise ConfigFileError(f"{SETTINGS_FILE}: proxy: only an admin may set {admin_keys[0]} (a file on the host)")
    flagged = docker_options.admin_flags_added(docker_options.stored(ctx.state, app),
                                               cfg.settings.docker_options.as_dict())
    if ctx.identity.role != "admin" and flagged:
        raise ConfigFileError(f"{SETTINGS_FILE}: docker_options: {flagged[0]}: admin only")
    stored = set(ctx.state.get_json(DOMAINS[0], app, DOMAINS[1], []))
    try:
        authorize_domains(ctx, app, [n for n in cfg.settings.domains if n not in stored])
    except Forbidden as e:
        raise ConfigFileError(f"{SETTINGS_FILE}: domains: {e.message}") from None
    return cfg


def _canonical_mounts(state: State, cfg: AppConfig) -> AppConfig:
    """Mounts of DATA_DIR/storage/NAME written as host paths are the storage directory NAME."""
    mounts = tuple(storage.canonical(state, storage.parse(m)).spec for m in cfg.settings.storage.mounts)
    if mounts == cfg.settings.storage.mounts:
        return cfg
    settings = cfg.settings.model_copy(update={"storage": Storage.model_construct(mounts=mounts)})
    return AppConfig(env=cfg.env, settings=settings)


def check(ctx: Context, app: str, cfg: AppConfig) -> None:
    """What the schema cannot know: process types of the release, builder names, domains of other apps."""
    s, state = cfg.settings, ctx.state
    current = state.current_release(app)
    if current is not None:
        known = sorted(p for p in current.processes if p != "release")
        unknown = sorted(set(s.scale) - set(known))
        if unknown:
            raise ConfigFileError(f"{SETTINGS_FILE}: scale: unknown process type {unknown[0]!r} "
                                  f"(known: {', '.join(known)})")
        if s.scale != current.formation and (refusal := pipeline.scale_refusal(ctx, app)) is not None:
            raise ConfigFileError(f"{SETTINGS_FILE}: scale: {refusal}")
        unknown = sorted(set(s.resources) - {*current.processes, resources.DEFAULT, resources.BUILD})
        if unknown:
            raise ConfigFileError(f"{SETTINGS_FILE}: resources: unknown process type {unknown[0]!r} "
                                  f"(known: {', '.join(sorted(current.processes))}, {resources.DEFAULT}, "
                                  f"{resources.BUILD})")
    old_mounts = storage.stored(state, app)
    try:
        storage.check_change(ctx, app, old_mounts, [storage.parse(m) for m in s.storage.mounts])
    except PushdockError as e:
        raise ConfigFileError(f"{SETTINGS_FILE}: storage.mounts: {e.message}") from None
    try:
        proxy_tuning.check_paths(s.proxy, state)
    except UsageError as e:
        raise ConfigFileError(f"{SETTINGS_FILE}: proxy: {e.message}") from None
    if s.builder.selected is not None:
        names = sorted(set(KNOWN_BUILDERS) | set(ctx.bus.registry("builders")))
        if s.builder.selected not in names:
            raise ConfigFileError(f"{SETTINGS_FILE}: builder.selected: unknown builder {s.builder.selected!r} "
                                  f"(use one of {', '.join(names)})")
    suffixes = [ctx.settings.domain, *state.get_json(DOMAINS[0], GLOBAL, DOMAINS[1], [])]
    for name in s.domains:
        if name in {f"{app}.{suffix}" for suffix in suffixes}:
            raise ConfigFileError(f"{SETTINGS_FILE}: domains: {name} is a default domain of the app (always served)")
    wanted = set(s.domains)
    for other in state.list_apps() if wanted else ():
        if other == app:
            continue
        taken = wanted & {*(f"{other}.{suffix}" for suffix in suffixes),
                          *state.get_json(DOMAINS[0], other, DOMAINS[1], [])}
        if taken:
            raise ConfigFileError(f"{SETTINGS_FILE}: domains: {sorted(taken)[0]} is used by app {other}")


def changes(old: AppConfig, new: AppConfig) -> list[str]:
    """What differs, for the pusher: key names and settings, never env values."""
    out = []
    env_keys = sorted(k for k in old.env.keys() | new.env.keys() if old.env.get(k) != new.env.get(k))
    if env_keys:
        out.append("env " + " ".join(env_keys))
    a, b = old.settings, new.settings
    if a.scale != b.scale:
        out.append("scale " + " ".join(f"{k}={v}" for k, v in sorted(b.scale.items())))
    if a.storage != b.storage:
        out.append("storage " + (" ".join(b.storage.mounts) or "(no mounts)"))
    for name in ("deploy_branch", "domains", "checks", "builder", "resources", "logs", "proxy", "docker_options",
                 "network"):
        if getattr(a, name) != getattr(b, name):
            out.append(name)
    return out


# -- applying a pushed config (caller holds the app lock) ---------------------------------------------------
def apply(ctx: Context, app: str, repo: Repo, cfg: AppConfig, *, restart: bool, why: str,
          progress: Progress) -> list[str]:
    """Store `cfg`. With `restart`: a new env, scale or mounts is released as vN+1 (zero downtime), new resource
    limits restart the app (zero downtime), new domains alone are re-routed; checks, builder and deploy branch
    apply from the next deploy. All or nothing."""

    state = ctx.state
    old = from_state(state, app)
    changed = changes(old, cfg)
    if not changed:
        return changed
    remounted = old.settings.storage != cfg.settings.storage
    release = old.env != cfg.env or old.settings.scale != cfg.settings.scale or remounted
    reroute = old.settings.domains != cfg.settings.domains or old.settings.proxy != cfg.settings.proxy
    resized = (_runtime(old.settings.resources) != _runtime(cfg.settings.resources)
               or old.settings.logs != cfg.settings.logs)  # both are chosen when a container is made
    flagged = docker_options.admin_flags_added(docker_options.stored(state, app),
                                               cfg.settings.docker_options.as_dict())
    with _restored_on_failure(state, app, repo):
        _store(state, app, cfg.settings, repo)
        if flagged:
            progress.step(f"Warning: docker_options: {'; '.join(flagged)} (accepted: pushed by an admin)")
            ctx.event("docker-options:flagged", app=app, flagged=flagged, via="refs/meta/config")
        if restart and release:
            if pipeline.new_release(ctx, app, why=why, env=cfg.env, formation=dict(cfg.settings.scale),
                                    mounts=list(cfg.settings.storage.mounts), progress=progress) is None:
                progress.step("Stored; the app is not deployed yet")
            _mounts_changed(ctx, app, old, cfg)
            return changed
        state.set_env(app, cfg.env)
        state.set_formation(app, dict(cfg.settings.scale))
        if restart and reroute and state.current_release(app) is not None:  # never deployed: no route yet
            pipeline.reroute(ctx, app)
            progress.step(f"Routed {app} to: {' '.join(ctx.domains(app))}")
        restarted = restart and resized and pipeline.restart_running(ctx, app, progress)
        if not restart or set(changed) - {"domains", "proxy", *(["resources", "logs"] if restarted else [])}:
            progress.step("Stored; takes effect on the next deploy")
        _mounts_changed(ctx, app, old, cfg)
    return changed


def _mounts_changed(ctx: Context, app: str, old: AppConfig, new: AppConfig) -> None:
    """Mounts changed by a push: the directories' users and an audit event (commands are audited by dispatch)."""
    before, after = set(old.settings.storage.mounts), set(new.settings.storage.mounts)
    if before == after:
        return
    storage.remember_users(ctx.state, app, [storage.parse(m) for m in after])
    ctx.event("storage:mounts", app=app, added=sorted(after - before), removed=sorted(before - after))


def _runtime(limits: dict[str, ResourceLimit]) -> dict[str, ResourceLimit]:
    """The limits running instances have (a build's cap changes nothing that runs)."""
    return {k: v for k, v in limits.items() if k != resources.BUILD}


def _store(state: State, app: str, s: AppSettings, repo: Repo) -> None:
    def put(key: tuple[str, str], value: str | None) -> None:
        if value is None:
            state.delete(key[0], app, key[1])
        else:
            state.set(key[0], app, key[1], value)

    if s.domains:
        state.set_json(DOMAINS[0], app, DOMAINS[1], list(s.domains))
    else:
        state.delete(DOMAINS[0], app, DOMAINS[1])
    for name, key in CHECK_FLAGS.items():
        put(key, "1" if getattr(s.checks, name) else None)
    for name, key in CHECK_NUMBERS.items():
        value = getattr(s.checks, name)
        put(key, None if value is None else str(value))
    put(CHECK_TYPE, s.checks.type)
    put(SELECTED, s.builder.selected)
    put(DOCKERFILE_PATH, s.builder.dockerfile_path)
    put(DEPLOY_BRANCH, s.deploy_branch)
    resources.store(state, app, {k: resources.Limits(v.memory, v.cpu) for k, v in s.resources.items()})
    storage.store(state, app, list(s.storage.mounts))
    logship.store(state, app, s.logs.vector_sink or "")
    proxy_tuning.store(state, app, s.proxy)
    docker_options.store(state, app, s.docker_options.as_dict())
    wanted = s.network.as_dict()
    for phase in networks.PHASES:
        networks.set_phase(state, app, phase, wanted.get(phase, []))
    if s.deploy_branch is not None:
        repo.refs.set_symbolic_ref(HEADREF, Ref(LOCAL_BRANCH_PREFIX + s.deploy_branch.encode()))


@contextlib.contextmanager
def _restored_on_failure(state: State, app: str, repo: Repo) -> Iterator[None]:
    """Snapshot the raw properties (and HEAD); put them back if the block raises."""
    saved = {key: state.get(key[0], app, key[1]) for key in PROPERTIES}
    env, formation = state.get_env(app), state.get_formation(app)
    head = repo.refs.get_symrefs().get(HEADREF)
    try:
        yield
    except BaseException:
        for key, value in saved.items():
            if value is None:
                state.delete(key[0], app, key[1])
            else:
                state.set(key[0], app, key[1], value)
        state.set_env(app, env)
        if formation is not None:
            state.set_formation(app, formation)
        if head is not None:
            repo.refs.set_symbolic_ref(HEADREF, head)
        raise


# -- recording the state as a commit -----------------------------------------------------------------------
def record(ctx: Context, app: str, summary: str) -> bytes | None:
    """Commit the app's settings to refs/meta/config (takes the app lock); None if nothing changed."""
    state = ctx.state
    if not APP_NAME.match(app) or not state.app_exists(app):  # `--global` settings have no repository
        return None
    with state.app_lock(app, timeout=ctx.settings.lock_timeout):
        repo = Repo(str(state.repo_path(app)))
        try:
            return commit_state(ctx, app, repo, summary)
        finally:
            repo.close()


def commit_state(ctx: Context, app: str, repo: Repo, summary: str) -> bytes | None:
    """The state as a commit on top of refs/meta/config, moved by compare-and-swap (caller holds the lock)."""
    old = repo.refs.as_dict().get(CONFIG_REF)
    tree = Tree()
    objects: list[Blob | Tree | Commit] = []
    for name, data in sorted(from_state(ctx.state, app).files().items()):
        blob = Blob.from_string(data)
        objects.append(blob)
        tree.add(name.encode(), 0o100644, blob.id)
    if old is not None:
        parent = repo[old]
        if isinstance(parent, Commit) and parent.tree == tree.id:
            return None
    commit = Commit()
    commit.tree = tree.id
    commit.parents = [old] if old is not None else []
    commit.author = _person(ctx.identity.name)
    commit.committer = COMMITTER
    commit.commit_time = commit.author_time = int(time.time())
    commit.commit_timezone = commit.author_timezone = 0
    commit.message = (" ".join(summary.split()) or "settings changed").encode() + b"\n"
    for obj in [*objects, tree, commit]:
        repo.object_store.add_object(obj)
    if not repo.refs.set_if_equals(CONFIG_REF, old or ZERO_SHA, commit.id):
        raise Conflict(f"refs/meta/config of {app} moved while recording {summary!r}; run the command again")
    logger.info("settings recorded", app=app, sha=commit.id.decode()[:12], summary=summary)
    return commit.id


def _person(name: str) -> bytes:
    clean = "".join(c for c in name if c not in "<>\n\r") or "unknown"
    email = clean if "@" in clean else f"{clean}@pushdock"
    return f"{clean} <{email}>".encode()


# -- git:set / git:report ------------------------------------------------------------------------------
def set_deploy_branch(ctx: Context, app: str, branch: str | None) -> str | None:
    """Store the deploy branch (None: back to the first branch pushed) and point HEAD at it."""
    if branch is not None:
        try:
            AppSettings(deploy_branch=branch)
        except ValueError:
            raise UsageError(f"invalid branch name {branch!r}") from None
    state = ctx.state
    with state.app_lock(app, timeout=ctx.settings.lock_timeout):
        if branch is None:
            state.delete(DEPLOY_BRANCH[0], app, DEPLOY_BRANCH[1])
            return None
        state.set(DEPLOY_BRANCH[0], app, DEPLOY_BRANCH[1], branch)
        repo = Repo(str(state.repo_path(app)))
        try:
            repo.refs.set_symbolic_ref(HEADREF, Ref(LOCAL_BRANCH_PREFIX + branch.encode()))
        finally:
            repo.close()
    return branch


def report(ctx: Context, app: str) -> dict[str, object]:
    """`git:report`: deploy branch, HEAD, branches, and the last change of refs/meta/config."""
    repo = Repo(str(ctx.state.repo_path(app)))
    try:
        refs = repo.get_refs()
        # refs written before receive required UTF-8 names may hold other bytes: show them, never crash
        head = repo.refs.get_symrefs().get(HEADREF, b"").decode("utf-8", "replace")
        branches = sorted(r.decode("utf-8", "replace").removeprefix("refs/heads/")
                          for r in refs if r.startswith(b"refs/heads/"))
        last: dict[str, object] = {}
        if CONFIG_REF in refs:
            commit = repo[refs[CONFIG_REF]]
            assert isinstance(commit, Commit)
            last = {"config sha": refs[CONFIG_REF].decode(),
                    "config changed": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(commit.commit_time)),
                    "config change": commit.message.decode("utf-8", "replace").strip().splitlines()[0],
                    "config author": commit.author.decode("utf-8", "replace")}
    finally:
        repo.close()
    return {
        "deploy branch": _text(ctx.state, DEPLOY_BRANCH, app) or "(the first branch pushed)",
        "head": head, "branches": " ".join(branches), **last,
        "ssh remote": f"ssh://pushdock@HOST:{ctx.settings.ssh_port}/{app}",
        "http remote": f"http://HOST:{ctx.settings.http_port}/git/{app}.git",
    }
