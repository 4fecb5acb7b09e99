"""Claim: parsers of user input accept or refuse with a one-line PushdockError; they never crash, and an
accepted value cannot escape its place (a path component, an env value, a command argument)."""

from __future__ import annotations

import io
import json
import re
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushdock import proxy_tuning
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.commands.config import parse_assignments
from pushdock.commands.ps import parse_scale
from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.procfile import parse_procfile
from pushdock.state import validate_app_name, validate_env_key

text = st.text(min_size=0, max_size=80)


@given(text)
def test_app_names_are_safe_dns_labels(name: str) -> None:
    try:
        ok = validate_app_name(name)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert ok == name and 1 <= len(name) <= 63
    assert "/" not in name and ".." not in name and name == name.lower() and name.strip() == name
    assert not name.startswith("-") and not name.endswith("-")


@given(text)
def test_env_keys(key: str) -> None:
    try:
        validate_env_key(key)
    except PushdockError:
        return
    assert key.isidentifier() or key.replace("_", "a").isalnum()
    assert "=" not in key and "\n" not in key


@given(st.lists(st.text(max_size=40), max_size=5))
def test_assignments_keep_values_whole(pairs: list[str]) -> None:
    try:
        parsed = parse_assignments(tuple(pairs))
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    for pair in pairs:
        key, _, value = pair.partition("=")
        assert parsed[key] == value or any(p.partition("=")[0] == key for p in pairs[pairs.index(pair) + 1:])


@given(st.lists(st.text(max_size=20), max_size=4))
def test_scale_arguments(pairs: list[str]) -> None:
    try:
        parsed = parse_scale(tuple(pairs))
    except PushdockError:
        return
    assert all(0 <= n <= 50 for n in parsed.values())


@given(st.text(max_size=400))
def test_procfile_never_crashes(text_: str) -> None:
    try:
        procs = parse_procfile(text_)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert all(k and ":" not in k and "\n" not in v for k, v in procs.items())


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> Context:
    from pushdock.settings import Settings

    s = Settings(data_dir=tmp_path_factory.mktemp("parsers"))
    ctx = Context(settings=s, bus_override=Bus(s.data_dir / "plugins", entry_points=False))
    assert dispatch(["apps:create", "app"], ctx, io.StringIO(), io.StringIO()) == 0
    return ctx


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(max_size=60))
def test_env_values_round_trip_exactly(admin: Context, value: str) -> None:
    """Newlines, quotes, `=`, `$`, NULs-free unicode: stored, exported in every format and read back by
    `config:get --encoded` byte for byte; `config:set --encoded` sets exactly the decoded value."""
    import base64

    from gitserver.settings_file import parse_env

    if "\x00" in value:
        return

    def call(*argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert dispatch(list(argv), admin, out, err) == 0, err.getvalue()
        return out.getvalue()

    call("config:set", "--no-restart", "app", f"K={value}")
    assert json.loads(call("config:export", "app", "--format", "json"))["K"] == value
    words = shlex.split(call("config:export", "app", "--format", "shell"))
    assert words[words.index(f"K={value}") - 1] == "export"
    assert parse_env(call("config:export", "app", "--format", "env"))["K"] == value
    assert base64.b64decode(call("config:get", "--encoded", "app", "K")) == value.encode()
    call("config:set", "--no-restart", "--encoded", "app", f"K={base64.b64encode(value[::-1].encode()).decode()}")
    assert call("config:get", "app", "K") == value[::-1] + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.text(max_size=80))
def test_ssh_command_lines_never_crash(admin: Context, line: str) -> None:
    """What the SSH door does with a command line: shlex-split, then the registry. Always an exit code.
    (The context has no plugins loaded, so nothing here can start a server or touch Docker.)"""
    from gitserver.worker import run

    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    err = io.StringIO()
    try:
        rc = run(line, admin, io.BytesIO(b""), out, err)
    except SystemExit as e:  # pragma: no cover - the door must never exit the process
        pytest.fail(f"SystemExit {e.code} for {line!r}")
    assert isinstance(rc, int)
    if rc != 0:
        assert "internal error" not in err.getvalue(), (line, err.getvalue())


def test_redaction_masks_values() -> None:
    from pushdock.redact import redact_command

    assert redact_command("config:set app A=1 'B=two words'") == "config:set app 'A=***' 'B=***'"
    assert redact_command("webhooks:set app secret hunter2") == "webhooks:set app secret '***'"
    assert "hunter2" not in redact_command("x 'unbalanced hunter2")


# -- domains, ports, app.json, the refs/meta/config files, resource sizes -------------------------------------
NGINX_SPECIALS = set(" \t\r\n;{}'\"$\\#")


@given(st.text(max_size=300))
def test_domains_are_hostnames_or_refused(name: str) -> None:
    """An accepted domain cannot break out of a proxy config: no spaces, quotes, `;`, braces or `$`."""
    from proxies.domains import validate_domain

    try:
        got = validate_domain(name)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert not NGINX_SPECIALS & set(got) and 1 <= len(got) <= 253 and got == got.lower()


@given(st.text(max_size=40))
def test_port_mappings(raw: str) -> None:
    from proxies.ports import parse

    try:
        m = parse(raw)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert m.scheme in ("http", "https") and 0 < m.host < 65536 and 0 < m.container < 65536
    assert parse(str(m)) == m


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10_000) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
APP_JSON = st.fixed_dictionaries({}, optional={
    "scripts": st.fixed_dictionaries({}, optional={"dokku": st.dictionaries(
        st.sampled_from(["predeploy", "postdeploy", "other"]), JSON, max_size=3)}) | JSON,
    "healthchecks": st.dictionaries(st.sampled_from(["web", "worker", "Bad name"]), st.lists(
        st.dictionaries(st.sampled_from(["type", "path", "command", "uptime", "attempts", "timeout", "wait",
                                         "content", "port", "initialDelay", "bogus"]), JSON, max_size=4),
        max_size=2), max_size=2) | JSON,
    "formation": st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({}, optional={"quantity": JSON}),
                                 max_size=3) | JSON,
    "cron": st.lists(st.fixed_dictionaries({}, optional={
        "command": st.text(max_size=30) | JSON,
        "schedule": st.sampled_from(["* * * * *", "@daily", "@reboot", "61 * * * *", "*/5 1-3 * * mon", ""])
        | st.text(alphabet="0123456789*/-, @LW#?abcdefghimnorstuwy", max_size=25) | JSON,
        "maintenance": JSON, "concurrency_policy": JSON, "bogus": JSON}), max_size=3) | JSON,
})


@given(APP_JSON)
def test_app_json_is_parsed_or_refused_in_one_line(data: dict) -> None:  # type: ignore[type-arg]
    from hooks.appjson import parse_app_json

    try:
        got = parse_app_json(json.dumps(data))
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert all(isinstance(v, str) for v in got.scripts.values())
    assert all(isinstance(n, int) and n >= 0 for n in got.formation.values())
    for entry in got.cron:  # every accepted schedule is one the timer can run
        from pushdock.timer import cron_expression, next_cron

        assert next_cron(cron_expression(entry["schedule"]), 0.0) > 0 and entry["command"].strip()


@given(st.text(max_size=300))
def test_config_ref_files_are_parsed_or_refused_in_one_line(text_: str) -> None:
    """Both files of refs/meta/config, from arbitrary text; what is accepted renders back to the same value."""
    from gitserver.settings_file import parse_env, parse_settings, render_env, render_settings

    for parse, render in ((parse_env, render_env), (parse_settings, render_settings)):
        try:
            value = parse(text_)
        except PushdockError as e:
            assert "\n" not in str(e)
            continue
        assert parse(render(value)) == value  # type: ignore[operator]


@given(st.text(max_size=30), st.text(max_size=10))
def test_resource_sizes_and_cpus(memory: str, cpu: str) -> None:
    from pushdock import resources

    for parse, check in ((resources.parse_memory, lambda v: 6 << 20 <= v <= 1 << 40),
                         (resources.parse_cpu, lambda v: 0.01 <= v <= 1024)):
        try:
            value = parse(memory if parse is resources.parse_memory else cpu)
        except PushdockError as e:
            assert "\n" not in str(e)
            continue
        assert check(value)


@given(st.text(max_size=80))
def test_storage_mounts_never_reach_a_system_path(spec: str) -> None:
    """`storage:mount` specs: an accepted one is absolute, without '..', mounts over nothing the system owns (or
    /app itself), and renders back to itself."""
    from pushdock import storage

    try:
        m = storage.parse(spec)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert m.target.startswith("/") and m.target not in storage.HIDDEN
    assert not any(m.target == t or m.target.startswith(t + "/") for t in storage.SYSTEM_TREES)
    assert ".." not in m.target.split("/") and ".." not in m.source.split("/") and ":" not in m.source
    assert storage.parse(m.spec) == m


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('ab/*,]}"\\\n /'), max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@given(JSON_VALUES, st.text(alphabet=st.sampled_from('ab/*,]}" '), max_size=10))
def test_app_json_comments_and_trailing_commas_change_no_value(value: object, note: str) -> None:
    """Comments after every line and a trailing comma in every non-empty container parse to the same value;
    strings that look like comments or commas are kept byte for byte."""
    from pushdock.jsonc import strip_jsonc

    lines = json.dumps(value, indent=1).split("\n")
    noisy = []
    for i, line in enumerate(lines):
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        comma = "," if after[:1] in ("}", "]") and not line.rstrip().endswith(("{", "[")) else ""
        noisy.append(f"{line}{comma} // {note}" if i % 2 else f"/* {note.replace('*', '')} */ {line}{comma}")
    assert json.loads(strip_jsonc("\n".join(noisy))) == value


@given(st.text(alphabet=st.sampled_from('{}[],:"\\/*ab1 \n'), max_size=60))
def test_app_json_text_is_parsed_or_refused_in_one_line(text_: str) -> None:
    from hooks.appjson import parse_app_json

    try:
        parse_app_json(text_)
    except PushdockError as e:
        assert "\n" not in str(e)


@given(st.sampled_from(sorted(proxy_tuning.KEYS)),
       st.one_of(st.text(max_size=40), st.sampled_from(["10m", "0", "60s", "on", "$remote_addr", "/var/log/nginx/a.log",
                                                         "/var/log/nginx/a.log;", "1k ", "$foo", "x\n.log", "\u00b2",
                                                         "1\u212a"])))
def test_proxy_tuning_values_hold_nothing_that_could_break_a_proxy_config(key: str, value: str) -> None:
    try:
        ok = proxy_tuning.parse(key, value)
    except PushdockError as e:
        assert "\n" not in str(e)
        return
    assert re.fullmatch(r"[A-Za-z0-9_./$-]{1,120}", ok), ok  # no space, quote, `;`, brace or newline
    assert ".." not in ok.split("/")


@given(st.text(max_size=80))
def test_docker_options_are_mapped_or_refused_in_one_line(text_: str) -> None:
    """docker-options: any text is parsed into engine fields or refused in one line; an accepted option that
    reaches a host namespace, host path, device or privilege is admin-only (docs/docker-options.md)."""
    from pushdock import docker_options

    try:
        option = docker_options.parse(text_)
    except PushdockError as e:
        assert "\n" not in e.message
        return
    for flag in option.flags:
        host = flag.host
        risky = (host.get("privileged") or host.get("binds") or host.get("devices") or host.get("security_opt")
                 or host.get("network_mode") or host.get("sysctls") or host.get("log_config")
                 or any(host.get(k) not in (None, "private", "shareable", "none")
                        for k in ("pid_mode", "ipc_mode", "userns_mode"))
                 or set(host.get("cap_add", [])) & docker_options.DANGEROUS_CAPS)
        assert not risky or flag.admin, (text_, flag)
        assert not any(k.startswith("pushdock.") for k in flag.labels)
