"""Docker options (`docker-options:*`, Dokku's names): container options an app adds per phase.

An option is what a Dokku user passes, e.g. `--shm-size 128m` or `-v /srv/x:/x`; pushdock never hands it to a
shell or the docker CLI: each flag is parsed into the engine API's fields (`create_host_config` keywords, labels,
the build API's keywords). Phases: `build` (build containers; the Dockerfile builder takes what the engine's build
API has), `deploy` (every process type) and `run` (one-off `run` containers and deploy tasks).

Stored as the property `docker-options/APP/options`: {"build": [...], "deploy": [...], "run": [...]}, each entry
the option as given (that is what `remove` matches, as Dokku). Every flag is one of:
- allowed: anyone who may change the app may add it;
- admin (`reason`): it weakens the isolation of the host (`--privileged`, host namespaces, host paths, devices,
  dangerous capabilities...): refused for deployers with that reason, accepted for admins but flagged;
- refused for everyone, with what to use instead (`--memory`: resource:limit, `--network NAME`: network:set...),
  and every flag pushdock cannot map onto the engine API (no silent pass-through).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pushdock.errors import Forbidden, UsageError

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import State

PLUGIN, PROPERTY = "docker-options", "options"
PHASES = ("build", "deploy", "run")
MAX_OPTIONS = 50  # per phase
MAX_LENGTH = 500
SIZE = re.compile(r"^([0-9]{1,12})([bkmg]?)\Z", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
ULIMIT = re.compile(r"^([a-z]{2,12})=(-?[0-9]{1,19})(?::(-?[0-9]{1,19}))?\Z")
HOST_IP = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9A-Fa-f.:]{2,45}|host-gateway)\Z")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
CAPABILITY = re.compile(r"^(?:CAP_)?([A-Z_]{2,30})\Z")
IP = re.compile(r"^[0-9A-Fa-f.:]{2,45}\Z")
CONTAINER_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]{0,255}\Z")
# capabilities that hand out the host (Docker's default set minus these is what a container normally has)
DANGEROUS_CAPS = {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME", "NET_ADMIN",
                  "DAC_READ_SEARCH", "MAC_ADMIN", "MAC_OVERRIDE", "BPF", "PERFMON", "SYSLOG", "LINUX_IMMUTABLE"}
# refused for everyone, with what to use instead
INSTEAD = {
    "--memory": "use resource:limit APP --memory SIZE", "-m": "use resource:limit APP --memory SIZE",
    "--memory-swap": "use resource:limit APP --memory SIZE", "--cpus": "use resource:limit APP --cpu CPUS",
    "--restart": "pushdock restarts ready instances itself: use ps:set APP restart-policy POLICY",
    "--env": "use config:set APP KEY=VALUE", "-e": "use config:set APP KEY=VALUE",
    "--env-file": "use config:set APP KEY=VALUE", "--name": "pushdock names the containers",
    "-p": "the proxy routes the web process: use ports:set / domains:add", "--publish": "the proxy routes the web "
    "process: use ports:set / domains:add", "--rm": "pushdock removes its containers itself",
    "-d": "pushdock runs the containers", "--detach": "pushdock runs the containers",
    "--mount": "use storage:mount APP SOURCE:PATH", "--volumes-from": "use storage:mount APP SOURCE:PATH",
    "--link": "use network:set APP attach-post-create NETWORK (apps reach each other by alias)",
    "--entrypoint": "set ENTRYPOINT in the Dockerfile or the Procfile's command",
}
TAKES_VALUE = {"--shm-size", "--ulimit", "--cap-add", "--cap-drop", "-v", "--volume", "--add-host", "--label", "-l",
               "--device", "--log-driver", "--log-opt", "--dns", "--dns-search", "--dns-option", "--tmpfs",
               "--security-opt", "--network", "--net", "--pid", "--ipc", "--userns", "--pids-limit",
               "--sysctl", *INSTEAD}
FLAGS = {"--init", "--privileged", "--read-only", *(k for k in ("--rm", "-d", "--detach"))}
BUILD_API = {"shm_size", "extra_hosts", "labels", "network_mode"}  # what the engine's build API takes


@dataclass(frozen=True)
class Flag:
    """One parsed flag: engine fields, and why it is admin-only (None: anyone may use it)."""

    name: str
    host: dict[str, Any] = field(default_factory=dict)  # create_host_config keywords (lists and dicts merge)
    labels: dict[str, str] = field(default_factory=dict)
    admin: str | None = None


@dataclass(frozen=True)
class Option:
    text: str
    flags: tuple[Flag, ...]

    @property
    def admin(self) -> list[str]:
        return [f.admin for f in self.flags if f.admin]


# -- parsing ---------------------------------------------------------------------------------------------
def parse_phases(text: str) -> list[str]:
    """`deploy,run` -> ["deploy", "run"] (comma-separated, as Dokku); UsageError naming a bad one."""
    phases = [p for p in text.split(",") if p]
    bad = [p for p in phases if p not in PHASES]
    if not phases or bad:
        raise UsageError(f"unknown phase {(bad or [text])[0][:20]!r}: use build, deploy or run (comma-separated)")
    return list(dict.fromkeys(phases))


def parse(text: str) -> Option:
    """An option as a user writes it -> its flags; UsageError (one line) for anything pushdock cannot apply."""
    if len(text) > MAX_LENGTH or "\n" in text or "\0" in text:
        raise UsageError(f"an option is one line of at most {MAX_LENGTH} characters")
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"cannot read option {text[:40]!r}: {e}") from None
    if not words:
        raise UsageError("give an option, e.g. \"--shm-size 256m\"")
    flags: list[Flag] = []
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if not name.startswith("-"):
            raise UsageError(f"{word[:40]!r} is not an option (options start with '-'; pushdock runs no command "
                             "from docker-options)")
        if name in TAKES_VALUE and not eq:
            if i + 1 >= len(words):
                raise UsageError(f"{name} needs a value")
            value, i = words[i + 1], i + 1
        elif name not in TAKES_VALUE and (eq or name not in FLAGS):
            raise UsageError(f"unsupported option {name[:40]!r}: pushdock maps only the options in "
                             "docs/docker-options.md onto the engine API")
        flags.append(_flag(name, value))
        i += 1
    return Option(text, tuple(flags))


def _flag(name: str, value: str) -> Flag:
    if name in INSTEAD:
        raise UsageError(f"{name} is not a docker option here: {INSTEAD[name]}")
    if name == "--shm-size":
        return Flag(name, {"shm_size": parse_size(value, name)})
    if name == "--ulimit":
        m = ULIMIT.match(value)
        if not m:
            raise UsageError(f"--ulimit takes NAME=SOFT[:HARD], e.g. nofile=1024:2048 (got {value[:40]!r})")
        soft = int(m.group(2))
        hard = int(m.group(3)) if m.group(3) is not None else soft
        return Flag(name, {"ulimits": [{"name": m.group(1), "soft": soft, "hard": hard}]})
    if name in ("--cap-add", "--cap-drop"):
        m = CAPABILITY.match(value.upper())
        if not m:
            raise UsageError(f"{name} takes a capability name such as NET_BIND_SERVICE (got {value[:40]!r})")
        cap = m.group(1)
        key = "cap_add" if name == "--cap-add" else "cap_drop"
        danger = name == "--cap-add" and cap in DANGEROUS_CAPS
        return Flag(name, {key: [cap]}, admin=f"--cap-add {cap} gives the container power over the host"
                    if danger else None)
    if name in ("-v", "--volume"):
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[0].startswith("/") or not CONTAINER_PATH.match(parts[1]) or (
                len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(f"{name} takes /HOST/PATH:/CONTAINER/PATH[:ro] (got {value[:60]!r}); "
                             "for app data use storage:mount")
        return Flag(name, {"binds": [value if len(parts) == 3 else value + ":rw"]},
                    admin="a host path mount reaches the host's files (deployers: use storage:mount)")
    if name == "--add-host":
        m = HOST_IP.match(value)
        if not m:
            raise UsageError(f"--add-host takes HOST:IP (got {value[:60]!r})")
        return Flag(name, {"extra_hosts": {m.group(1): m.group(2)}})
    if name in ("--label", "-l"):
        key, _, val = value.partition("=")
        if not LABEL_KEY.match(key) or "\n" in val or len(val) > 256:
            raise UsageError(f"--label takes KEY=VALUE (got {value[:60]!r})")
        if key.startswith(("pushdock.", "com.docker.")):
            raise UsageError(f"label {key!r} is reserved (pushdock.* labels say who owns a container)")
        return Flag(name, labels={key: val})
    if name == "--device":
        if not value.startswith("/dev/"):
            raise UsageError(f"--device takes /dev/HOST[:/dev/CONTAINER[:rwm]] (got {value[:60]!r})")
        return Flag(name, {"devices": [value]}, admin="a host device reaches the host's hardware")
    if name == "--init":
        return Flag(name, {"init": True})
    if name == "--read-only":
        return Flag(name, {"read_only": True})
    if name == "--privileged":
        return Flag(name, {"privileged": True}, admin="--privileged gives the container the whole host")
    if name == "--log-driver":
        if not re.match(r"^[a-z][a-z0-9_-]{0,30}\Z", value):
            raise UsageError(f"--log-driver takes a driver name (got {value[:40]!r})")
        return Flag(name, {"log_config": {"type": value}},
                    admin="a log driver other than the default sends logs elsewhere (and `logs APP` may go blind)")
    if name == "--log-opt":
        key, eq, val = value.partition("=")
        if not eq or not re.match(r"^[a-z][a-z0-9_.-]{0,40}\Z", key):
            raise UsageError(f"--log-opt takes KEY=VALUE (got {value[:40]!r})")
        return Flag(name, {"log_config": {"config": {key: val}}}, admin="log options choose where logs go")
    if name in ("--dns", "--dns-search", "--dns-option"):
        if name == "--dns" and not IP.match(value):
            raise UsageError(f"--dns takes an IP address (got {value[:40]!r})")
        if not re.match(r"^[A-Za-z0-9.:_-]{1,253}\Z", value):
            raise UsageError(f"{name} takes a domain or option (got {value[:40]!r})")
        return Flag(name, {{"--dns": "dns", "--dns-search": "dns_search", "--dns-option": "dns_opt"}[name]: [value]})
    if name == "--tmpfs":
        path, _, opts = value.partition(":")
        if not CONTAINER_PATH.match(path) or not re.match(r"^[a-z0-9=,]{0,100}\Z", opts):
            raise UsageError(f"--tmpfs takes /PATH[:OPTIONS] (got {value[:60]!r})")
        return Flag(name, {"tmpfs": {path: opts}})
    if name == "--pids-limit":
        if not re.match(r"^-?[0-9]{1,9}\Z", value):
            raise UsageError(f"--pids-limit takes a number (got {value[:40]!r})")
        return Flag(name, {"pids_limit": int(value)})
    if name == "--security-opt":
        if not re.match(r"^[a-z-]+(?:[=:][A-Za-z0-9_./:-]{0,200})?\Z", value):
            raise UsageError(f"--security-opt takes KEY[=VALUE] (got {value[:40]!r})")
        return Flag(name, {"security_opt": [value]},
                    admin="--security-opt can switch off the container's confinement (seccomp, AppArmor)")
    if name == "--sysctl":
        key, eq, val = value.partition("=")
        if not eq or not re.match(r"^[a-z0-9_.]{1,100}\Z", key):
            raise UsageError(f"--sysctl takes KEY=VALUE (got {value[:40]!r})")
        return Flag(name, {"sysctls": {key: val}}, admin="--sysctl changes kernel settings")
    if name in ("--network", "--net"):
        if value != "host":
            raise UsageError(f"{name} is not set by docker-options: use network:set APP initial-network {value[:40]}")
        return Flag(name, {"network_mode": "host"}, admin="--network host shares the host's network stack")
    if name in ("--pid", "--ipc", "--userns"):
        key = {"--pid": "pid_mode", "--ipc": "ipc_mode", "--userns": "userns_mode"}[name]
        if not re.match(r"^[a-z:0-9A-Z_.-]{1,100}\Z", value):
            raise UsageError(f"{name} takes a mode such as host (got {value[:40]!r})")
        if name == "--ipc" and value in ("private", "shareable", "none"):
            return Flag(name, {key: value})
        return Flag(name, {key: value}, admin=f"{name}={value} shares a namespace with the host or another "
                    "container")
    raise UsageError(f"unsupported option {name[:40]!r}")  # pragma: no cover — parse() checked the name


def parse_size(value: str, what: str) -> int:
    m = SIZE.match(value.strip())
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"{what} takes a size such as 64m or 1g (got {value[:30]!r})")
    return int(m.group(1)) * UNITS[m.group(2).lower()]


def authorize(ctx: Context, options: list[Option]) -> list[str]:
    """Forbidden (the first reason) if a deployer adds an admin-only option; for an admin, the flags raised."""
    reasons = [r for o in options for r in o.admin]
    if reasons and ctx.identity.role != "admin":
        raise Forbidden(f"{reasons[0]}: admin only")
    return reasons


# -- storage ---------------------------------------------------------------------------------------------
def stored(state: State, app: str) -> dict[str, list[str]]:
    """{phase: [option, ...]} as stored (unreadable entries left out: deploys must go on)."""
    raw = state.get_json(PLUGIN, app, PROPERTY, {})
    out: dict[str, list[str]] = {}
    for phase in PHASES:
        values = raw.get(phase) if isinstance(raw, dict) else None
        if isinstance(values, list) and values:
            out[phase] = [v for v in values if isinstance(v, str)]
    return out


def store(state: State, app: str, options: dict[str, list[str]]) -> None:
    kept = {p: list(options[p]) for p in PHASES if options.get(p)}
    if kept:
        state.set(PLUGIN, app, PROPERTY, json.dumps(kept, sort_keys=True))
    else:
        state.delete(PLUGIN, app, PROPERTY)


def check_phase_list(options: list[str]) -> list[Option]:
    if len(options) > MAX_OPTIONS:
        raise UsageError(f"at most {MAX_OPTIONS} options per phase")
    if len(set(options)) != len(options):
        raise UsageError("an option is listed twice")
    return [parse(o) for o in options]


def admin_flags_added(old: dict[str, list[str]], new: dict[str, list[str]]) -> list[str]:
    """The admin-only reasons of options in `new` that `old` does not have (what a change must be allowed)."""
    return [r for p in PHASES for o in new.get(p, []) if o not in old.get(p, []) for r in parse(o).admin]


# -- what the engine gets ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Applied:
    host: dict[str, Any]  # create_host_config keywords
    labels: dict[str, str]

    def build_api(self) -> tuple[dict[str, Any], list[str]]:
        """The build API's keywords and the flags it cannot take (told to the pusher, never applied)."""
        kw = {k: v for k, v in self.host.items() if k in BUILD_API}
        if self.labels:
            kw["labels"] = dict(self.labels)
        return kw, sorted(k for k in self.host if k not in BUILD_API)


SWARM_SPEC = {"cap_add", "cap_drop", "init", "extra_hosts", "read_only", "sysctls", "dns", "dns_search", "dns_opt"}


def swarm_spec(applied: Applied) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """What a swarm task's ContainerSpec takes of the options (its keywords), their labels, and the fields it has no
    place for (said on the deploy's output, never applied)."""
    host = applied.host
    kw: dict[str, Any] = {k: host[k] for k in ("cap_add", "cap_drop", "init", "read_only", "sysctls") if k in host}
    if "extra_hosts" in host:
        kw["hosts"] = dict(host["extra_hosts"])
    if any(k in host for k in ("dns", "dns_search", "dns_opt")):
        from docker.types import DNSConfig  # noqa: PLC0415 -- start-up: docker loads when first used

        kw["dns_config"] = DNSConfig(nameservers=host.get("dns"), search=host.get("dns_search"),
                                     options=host.get("dns_opt"))
    return kw, applied.labels, sorted(k for k in host if k not in SWARM_SPEC)


def for_phase(state: State, app: str, phase: str) -> Applied:
    """The app's options of `phase`, merged (lists concatenate, dicts update, scalars: the last one wins).
    An option that no longer parses (a rule got stricter) is left out, never fatal."""
    host: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for text in stored(state, app).get(phase, []):
        try:
            option = parse(text)
        except UsageError:
            continue
        for flag in option.flags:
            labels.update(flag.labels)
            for key, value in flag.host.items():
                _merge(host, key, value)
    return Applied(host, labels)


def _merge(into: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, list):
        into[key] = [*into.get(key, []), *value]
    elif isinstance(value, dict) and key == "log_config":
        old = into.get(key, {})
        into[key] = {**old, **value, "config": {**old.get("config", {}), **value.get("config", {})}}
    elif isinstance(value, dict):
        into[key] = {**into.get(key, {}), **value}
    else:
        into[key] = value


def host_config(applied: Applied, base: dict[str, Any]) -> dict[str, Any]:
    """`base` create_host_config keywords with the options over them (binds and lists add up)."""
    out = dict(base)
    for key, value in applied.host.items():
        if key == "log_config":
            out[key] = {"type": value.get("type", "json-file"), "config": value.get("config", {})}
        elif isinstance(value, list):
            out[key] = [*out.get(key, []), *value]
        elif isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out
