"""The two files of `refs/meta/config`: `env` (dotenv) and `pushdock.toml` (a pydantic schema).

Both are parsed strictly: anything unexpected is a `ConfigFileError` whose message is one line naming the
file, the line or key, and what is wrong (it becomes the `ng` reason of a rejected push). Rendering is the
inverse: `parse_*(render_*(x)) == x` for every valid `x`, so a fetched config pushes back unchanged.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import PurePosixPath
from typing import Any, Literal

from dulwich.refs import LOCAL_BRANCH_PREFIX, Ref, check_ref_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pushdock import docker_options, logship, networks, proxy_tuning, resources, storage
from pushdock.errors import UsageError
from pushdock.state import ENV_KEY, PROCESS_NAME

ENV_FILE = "env"
SETTINGS_FILE = "pushdock.toml"
MAX_SCALE = 50  # as `ps:scale`
MAX_WAIT_TO_RETIRE = 3600  # as `checks:set` (pushdock/checks.py)
MAX_STOP_TIMEOUT = 600
MAX_UPTIME_WAIT = 600  # as `checks:set APP wait`
MAX_DOMAINS = 100  # as `domains:*`
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}\Z)(?:\*\.)?(?:{LABEL}\.)*{LABEL}\Z")  # `*.example.com`: a wildcard
PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./:@%+,=-]+\Z")
BUILDER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")


class ConfigFileError(UsageError):
    """A config file that cannot be applied; the message is one line for the pusher."""


# -- pushdock.toml -----------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Checks(_Strict):
    """`[checks]`: zero-downtime checks (`checks` properties)."""

    disabled: bool = False  # old containers stop before new ones start (downtime): `checks:disable`
    skipped: bool = False  # new containers take traffic once running, unchecked: `checks:skip`
    wait_to_retire: int | None = Field(default=None, ge=0, le=MAX_WAIT_TO_RETIRE)  # seconds old ones keep serving
    stop_timeout: int | None = Field(default=None, ge=0, le=MAX_STOP_TIMEOUT)  # SIGTERM -> SIGKILL grace period
    type: Literal["http", "uptime"] | None = None  # readiness of new instances (`checks:set APP type`); unset: http
    wait: int | None = Field(default=None, ge=1, le=MAX_UPTIME_WAIT)  # seconds of the uptime check; unset: 10


class Builder(_Strict):
    """`[builder]`: a forced builder and the Dockerfile's path."""

    selected: str | None = None  # dockerfile | herokuish | pack (or a plugin's builder); unset: detect
    dockerfile_path: str | None = None  # relative to the repository root; unset: Dockerfile

    @field_validator("selected")
    @classmethod
    def _builder(cls, value: str | None) -> str | None:
        if value is not None and not BUILDER_NAME.match(value):
            raise ValueError(f"{value!r} is not a builder name")
        return value

    @field_validator("dockerfile_path")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if (not value or path.is_absolute() or "\\" in value or "\0" in value or ".." in path.parts
                or not [p for p in path.parts if p != "."]):
            raise ValueError(f"{value!r} must be a file path relative to the repository root, without '..'")
        return value


class ResourceLimit(_Strict):
    """`[resources.KEY]`: memory (`"256m"`) and CPUs (`0.5`) of a process type, `_default_` or `_build_`."""

    memory: int | None = None  # bytes; written as a size string
    cpu: float | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return resources.parse_memory(value)
            except UsageError as e:
                raise ValueError(str(e)) from None
        return value

    @field_validator("memory")
    @classmethod
    def _memory_range(cls, value: int | None) -> int | None:
        if value is not None and not resources.MIN_MEMORY <= value <= resources.MAX_MEMORY:
            raise ValueError("memory must be between 6m and 1t")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: float | None) -> float | None:
        if value is not None:
            try:
                resources.check_cpu(value)
            except UsageError as e:
                raise ValueError(str(e)) from None
        return value


class Storage(_Strict):
    """`[storage]`: the app's mounts, `SOURCE:CONTAINER_PATH[:ro]` (`storage:mount`, pushdock/storage.py)."""

    mounts: tuple[str, ...] = ()

    @field_validator("mounts", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            parsed = [storage.parse(spec) for spec in value]
            storage.check_list(parsed)
        except UsageError as e:
            raise ValueError(str(e)) from None
        return tuple(m.spec for m in parsed)


class Logs(_Strict):
    """`[logs]`: where the app's logs are shipped (`logs:set APP vector-sink URI`, pushdock/logship.py)."""

    vector_sink: str | None = None

    @field_validator("vector_sink")
    @classmethod
    def _sink(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                logship.parse(value)
            except UsageError as e:
                raise ValueError(e.message) from None
        return value


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # TOML arrays are lists; strict wants a tuple


class DockerOptions(_Strict):
    """`[docker_options]`: container options per phase, as `docker-options:add` takes them (docker_options.py)."""

    build: tuple[str, ...] = ()
    deploy: tuple[str, ...] = ()
    run: tuple[str, ...] = ()

    @field_validator("build", "deploy", "run", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _tuple(value)

    @field_validator("build", "deploy", "run")
    @classmethod
    def _options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            docker_options.check_phase_list(list(value))
        except UsageError as e:
            raise ValueError(str(e)) from None
        return value

    def as_dict(self) -> dict[str, list[str]]:
        return {p: list(getattr(self, p)) for p in docker_options.PHASES if getattr(self, p)}


class Network(_Strict):
    """`[network]`: the networks the app's containers join (`network:set`, pushdock/networks.py)."""

    attach_post_create: tuple[str, ...] = ()
    attach_post_deploy: tuple[str, ...] = ()
    initial_network: str | None = None

    @field_validator("attach_post_create", "attach_post_deploy", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _tuple(value)

    @field_validator("attach_post_create", "attach_post_deploy")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a network is listed twice")
        for name in value:
            cls._name(name)
        return value

    @field_validator("initial_network")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                networks.check_name(value)
            except UsageError as e:
                raise ValueError(str(e)) from None
        return value

    def as_dict(self) -> dict[str, list[str]]:
        out = {"attach-post-create": list(self.attach_post_create),
               "attach-post-deploy": list(self.attach_post_deploy),
               "initial-network": [self.initial_network] if self.initial_network else []}
        return {k: v for k, v in out.items() if v}


class AppSettings(_Strict):
    """`pushdock.toml`: every setting of an app that is not its environment. Missing keys mean the default."""

    deploy_branch: str | None = None  # the branch whose pushes deploy; unset: the first branch pushed
    domains: tuple[str, ...] = ()  # extra hostnames, besides APP.DOMAIN
    scale: dict[str, int] = Field(default_factory=dict)  # process type -> count
    checks: Checks = Field(default_factory=Checks)
    builder: Builder = Field(default_factory=Builder)
    resources: dict[str, ResourceLimit] = Field(default_factory=dict)  # `resource:limit`
    storage: Storage = Field(default_factory=Storage)
    docker_options: DockerOptions = Field(default_factory=DockerOptions)  # `docker-options:*`
    network: Network = Field(default_factory=Network)  # `network:set`
    logs: Logs = Field(default_factory=Logs)
    proxy: dict[str, str] = Field(default_factory=dict)  # `proxy:set APP KEY VALUE` (nginx:set keys)

    @field_validator("proxy", mode="before")
    @classmethod
    def _scalars(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        # `hsts = true`, `hsts-max-age = 300`: TOML scalars are the same values as strings
        return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int) else v
                for k, v in value.items()}

    @field_validator("proxy")
    @classmethod
    def _tuning(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return proxy_tuning.check_values(value)  # canonical: `hsts = "on"` is stored as "true"
        except UsageError as e:
            raise ValueError(e.message) from None

    @field_validator("resources")
    @classmethod
    def _resource_keys(cls, value: dict[str, ResourceLimit]) -> dict[str, ResourceLimit]:
        for key, limit in value.items():
            try:
                resources.check_key(key)
            except UsageError as e:
                raise ValueError(str(e)) from None
            if limit.memory is None and limit.cpu is None:
                raise ValueError(f"{key}: give memory and/or cpu (or remove the table)")
        return value

    @field_validator("deploy_branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and not check_ref_format(Ref(LOCAL_BRANCH_PREFIX + value.encode())):
            raise ValueError(f"{value!r} is not a valid branch name")
        return value

    @field_validator("domains", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value  # TOML arrays are lists; strict wants a tuple

    @field_validator("domains")
    @classmethod
    def _hostnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_DOMAINS:
            raise ValueError(f"at most {MAX_DOMAINS} domains")
        seen: set[str] = set()
        for name in value:
            if not HOSTNAME.match(name):
                raise ValueError(f"{name!r} is not a valid hostname (lowercase letters, digits, '-' and '.', "
                                 "optionally after '*.')")
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: dict[str, int]) -> dict[str, int]:
        for name, count in value.items():
            if not PROCESS_NAME.match(name):
                raise ValueError(f"{name!r} is not a process type name")
            if not 0 <= count <= MAX_SCALE:
                raise ValueError(f"{name} = {count} is outside 0..{MAX_SCALE}")
        return value


def parse_settings(text: str) -> AppSettings:
    """`pushdock.toml` -> AppSettings; ConfigFileError (one line) for a syntax error, unknown key or bad value."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"{SETTINGS_FILE}: {e}") from None
    try:
        return AppSettings.model_validate(data)
    except ValidationError as e:
        raise ConfigFileError(f"{SETTINGS_FILE}: {_first_error(e)}") from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string with ASCII escapes is a valid TOML basic string


def render_settings(s: AppSettings) -> str:
    """AppSettings -> `pushdock.toml` text (stable: the same settings always give the same bytes)."""
    lines = ["# pushdock settings: edit, commit, push to refs/meta/config (docs/git.md)"]
    if s.deploy_branch is not None:
        lines.append(f"deploy_branch = {_toml_string(s.deploy_branch)}")
    lines.append("domains = [" + ", ".join(_toml_string(d) for d in s.domains) + "]")
    lines += ["", "[scale]", *(f"{k} = {v}" for k, v in sorted(s.scale.items()))]
    lines += ["", "[checks]", f"disabled = {str(s.checks.disabled).lower()}",
              f"skipped = {str(s.checks.skipped).lower()}"]
    for key in ("wait_to_retire", "stop_timeout", "wait"):
        if (value := getattr(s.checks, key)) is not None:
            lines.append(f"{key} = {value}")
    if s.checks.type is not None:
        lines.append(f"type = {_toml_string(s.checks.type)}")
    lines += ["", "[builder]"]
    for key in ("selected", "dockerfile_path"):
        if (value := getattr(s.builder, key)) is not None:
            lines.append(f"{key} = {_toml_string(value)}")
    lines += ["", "[storage]", "mounts = [" + ", ".join(_toml_string(m) for m in s.storage.mounts) + "]"]
    if s.proxy:
        lines += ["", "[proxy]", *(f"{k} = {_toml_string(v)}" for k, v in sorted(s.proxy.items()))]
    lines += ["", "[docker_options]"]
    for phase in docker_options.PHASES:
        lines.append(f"{phase} = [" + ", ".join(_toml_string(o) for o in getattr(s.docker_options, phase)) + "]")
    lines += ["", "[network]"]
    for key in ("attach_post_create", "attach_post_deploy"):
        lines.append(f"{key} = [" + ", ".join(_toml_string(n) for n in getattr(s.network, key)) + "]")
    if s.network.initial_network is not None:
        lines.append(f"initial_network = {_toml_string(s.network.initial_network)}")
    for key, limit in sorted(s.resources.items()):
        lines += ["", f"[resources.{key}]"]
        if limit.memory is not None:
            lines.append(f"memory = {_toml_string(resources.format_memory(limit.memory))}")
        if limit.cpu is not None:
            lines.append(f"cpu = {limit.cpu!r}")
    if s.logs.vector_sink is not None:  # only when set: the files of apps that never ship stay as they were
        lines += ["", "[logs]", f"vector_sink = {_toml_string(s.logs.vector_sink)}"]
    return "\n".join(lines) + "\n"


# -- env (dotenv) --------------------------------------------------------------------------------------
def parse_env(text: str) -> dict[str, str]:
    """A dotenv file -> {KEY: value}; ConfigFileError naming the first bad line.

    `KEY=value` (unquoted: trimmed, ` #` starts a comment), `KEY="json \\n escapes"`, `KEY='literal'`;
    an optional `export ` prefix; blank lines and `#` comments; a key may appear once.
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside quotes
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, rest = line.partition("=")
        key = key.rstrip()
        if not sep or not ENV_KEY.match(key):
            raise ConfigFileError(f"{ENV_FILE} line {number}: expected KEY=VALUE with KEY made of letters, "
                                  "digits and '_'")
        if key in env:
            raise ConfigFileError(f"{ENV_FILE} line {number}: {key} is set twice")
        env[key] = _value(rest.lstrip(), number)
    return env


def _value(rest: str, number: int) -> str:
    if rest.startswith('"'):
        try:
            value, end = json.JSONDecoder().raw_decode(rest)
        except json.JSONDecodeError as e:
            raise ConfigFileError(f"{ENV_FILE} line {number}: bad double-quoted value ({e.msg})") from None
        tail = rest[end:]
    elif rest.startswith("'"):
        close = rest.find("'", 1)
        if close < 0:
            raise ConfigFileError(f"{ENV_FILE} line {number}: unterminated single-quoted value")
        value, tail = rest[1:close], rest[close + 1 :]
    else:
        value, _, _ = rest.partition(" #")
        return value.strip()
    if tail.strip() and not tail.strip().startswith("#"):
        raise ConfigFileError(f"{ENV_FILE} line {number}: unexpected text after the quoted value")
    return str(value)


def render_env(env: dict[str, str]) -> str:
    """{KEY: value} -> dotenv text, sorted by key; values that need it are double-quoted with JSON escapes."""
    lines = ["# the app's whole environment (dotenv): edit, commit, push to refs/meta/config"]
    for key in sorted(env):
        value = env[key]
        lines.append(f"{key}={value if PLAIN_VALUE.match(value) else json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"
