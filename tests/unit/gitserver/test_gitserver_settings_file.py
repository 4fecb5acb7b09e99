"""The files of refs/meta/config: strict parsing with one-line reasons, and render/parse round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitserver.settings_file import (
    AppSettings,
    Builder,
    Checks,
    ConfigFileError,
    ResourceLimit,
    Storage,
    parse_env,
    parse_settings,
    render_env,
    render_settings,
)

FULL = """\
deploy_branch = "production"
domains = ["www.example.com", "*.example.com"]

[scale]
web = 2
worker = 1

[checks]
disabled = false
skipped = true
wait_to_retire = 30
stop_timeout = 5

[builder]
selected = "dockerfile"
dockerfile_path = "docker/Dockerfile.web"

[storage]
mounts = ["uploads:/app/uploads", "/srv/shared//:/shared:ro"]

[proxy]
client-max-body-size = "10M"
hsts = "on"
hsts-max-age = 300
hsts-preload = true
"""


def test_a_full_file_parses_and_renders_back() -> None:
    s = parse_settings(FULL)
    assert s == AppSettings(
        deploy_branch="production", domains=("www.example.com", "*.example.com"), scale={"web": 2, "worker": 1},
        checks=Checks(skipped=True, wait_to_retire=30, stop_timeout=5),
        builder=Builder(selected="dockerfile", dockerfile_path="docker/Dockerfile.web"),
        storage=Storage(mounts=("uploads:/app/uploads", "/srv/shared:/shared:ro")),  # paths in their plain form
        proxy={"client-max-body-size": "10m", "hsts": "true", "hsts-max-age": "300", "hsts-preload": "true"},
    )
    assert parse_settings(render_settings(s)) == s


def test_an_empty_file_means_every_default() -> None:
    assert parse_settings("") == AppSettings()
    text = render_settings(AppSettings())
    assert "domains = []" in text and "[scale]" in text and "disabled = false" in text
    assert parse_settings(text) == AppSettings()


@pytest.mark.parametrize(("text", "reason"), [
    ("[checks]\nwait_to_retre = 3\n", "pushdock.toml: unknown key 'checks.wait_to_retre'"),
    ("colour = 'red'\n", "pushdock.toml: unknown key 'colour'"),
    ("[scale\nweb = 1\n", "pushdock.toml: Expected ']' at the end of a table declaration (at line 1, column 7)"),
    ("domains = \n", "pushdock.toml: Invalid value (at line 1, column 11)"),
    ("domains = ['Example.com']\n", "pushdock.toml: domains: 'Example.com' is not a valid hostname "
                                    "(lowercase letters, digits, '-' and '.', optionally after '*.')"),
    ("domains = ['a.*.com']\n", "pushdock.toml: domains: 'a.*.com' is not a valid hostname "
                                "(lowercase letters, digits, '-' and '.', optionally after '*.')"),
    ("domains = ['a.com', 'a.com']\n", "pushdock.toml: domains: 'a.com' is listed twice"),
    ("domains = 'a.com'\n", "pushdock.toml: domains: Input should be a valid tuple"),
    ("[scale]\nweb = 51\n", "pushdock.toml: scale: web = 51 is outside 0..50"),
    ("[scale]\nweb = true\n", "pushdock.toml: scale.web: Input should be a valid integer"),
    ("[scale]\nWeb = 1\n", "pushdock.toml: scale: 'Web' is not a process type name"),
    ("[checks]\ndisabled = 1\n", "pushdock.toml: checks.disabled: Input should be a valid boolean"),
    ("[checks]\nstop_timeout = 601\n", "pushdock.toml: checks.stop_timeout: Input should be less than or equal "
                                       "to 600"),
    ("[checks]\nstop_timeout = -1\n", "pushdock.toml: checks.stop_timeout: Input should be greater than or "
                                      "equal to 0"),
    ("deploy_branch = 'a..b'\n", "pushdock.toml: deploy_branch: 'a..b' is not a valid branch name"),
    ("[builder]\nselected = 'Docker File'\n", "pushdock.toml: builder.selected: 'Docker File' is not a builder name"),
    ("[builder]\ndockerfile_path = '../Dockerfile'\n",
     "pushdock.toml: builder.dockerfile_path: '../Dockerfile' must be a file path relative to the repository "
     "root, without '..'"),
    ("[builder]\ndockerfile_path = '/etc/passwd'\n",
     "pushdock.toml: builder.dockerfile_path: '/etc/passwd' must be a file path relative to the repository "
     "root, without '..'"),
    ("[storage]\nmounts = ['up:/']\n", "pushdock.toml: storage.mounts: container path / may not be mounted over "
                                      "(it would hide the system's files); use a path below it"),
    ("[storage]\nmounts = ['up:/proc/1']\n", "pushdock.toml: storage.mounts: container path /proc/1 is inside "
                                             "/proc, which belongs to the system"),
    ("[storage]\nmounts = ['../up:/x']\n", "pushdock.toml: storage.mounts: source '../up' must be a storage "
                                           "directory name (storage:ensure-directory) or an absolute host path; "
                                           "relative paths are not accepted"),
    ("[storage]\nmounts = ['up:/x', 'down:/x/']\n", "pushdock.toml: storage.mounts: /x is mounted twice"),
    ("[storage]\nmounts = 'up:/x'\n", "pushdock.toml: storage.mounts: Input should be a valid tuple"),
    ("[storage]\nmount = ['up:/x']\n", "pushdock.toml: unknown key 'storage.mount'"),
    ("[proxy]\nclient-max-body-size = '10x'\n", "pushdock.toml: proxy: client-max-body-size: '10x' is not a size "
                                                "like 10m, 512k or 1g"),
    ("[proxy]\nproxy-read-timeout = 0\n", "pushdock.toml: proxy: proxy-read-timeout: '0': the duration must be "
                                           "between 1s and 24h"),
    ("[proxy]\naccess-log-path = 'x.log'\n", "pushdock.toml: proxy: access-log-path: 'x.log' is not off or an "
                                              "absolute path to a NAME.log file"),
    ("[proxy]\nx-forwarded-for-value = '$request_uri'\n",
     "pushdock.toml: proxy: x-forwarded-for-value: '$request_uri' is not one of $proxy_add_x_forwarded_for, "
     "$remote_addr, $http_x_forwarded_for"),
    ("[proxy]\nclient_max_body_size = '1m'\n", "pushdock.toml: proxy: unknown key 'client_max_body_size' (keys: "
                                                "client-max-body-size, proxy-read-timeout, proxy-buffer-size, hsts, "
                                                "hsts-max-age, hsts-include-subdomains, hsts-preload, "
                                                "x-forwarded-for-value, x-forwarded-port-value, "
                                                "x-forwarded-proto-value, x-forwarded-ssl, access-log-format, "
                                                "access-log-path, error-log-path)"),
])
def test_bad_settings_are_refused_with_one_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigFileError) as e:
        parse_settings(text)
    assert str(e.value) == reason
    assert "\n" not in str(e.value)


def test_env_syntax() -> None:
    text = """\
# comment
export A = 1 # trailing comment

B="two\\nlines \\"quoted\\""
C='lit $HOME \\n'
D=
E=a=b
"""
    assert parse_env(text) == {"A": "1", "B": 'two\nlines "quoted"', "C": "lit $HOME \\n", "D": "", "E": "a=b"}


@pytest.mark.parametrize(("text", "reason"), [
    ("A", "env line 1: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("\n1A=x", "env line 2: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("A-B=x", "env line 1: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("A=1\nA=2", "env line 2: A is set twice"),
    ('A="open', "env line 1: bad double-quoted value (Unterminated string starting at)"),
    ('A="\\q"', "env line 1: bad double-quoted value (Invalid \\escape)"),
    ("A='open", "env line 1: unterminated single-quoted value"),
    ('A="x" y', "env line 1: unexpected text after the quoted value"),
])
def test_bad_env_lines_are_refused_with_their_number(text: str, reason: str) -> None:
    with pytest.raises(ConfigFileError) as e:
        parse_env(text)
    assert str(e.value) == reason


@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
                       st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=8))
def test_env_round_trips(env: dict[str, str]) -> None:
    assert parse_env(render_env(env)) == env


@given(st.builds(
    AppSettings,
    deploy_branch=st.one_of(st.none(), st.sampled_from(["main", "release/v1", "prod"])),
    domains=st.lists(st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True), unique=True,
                     max_size=3).map(tuple),
    scale=st.dictionaries(st.sampled_from(["web", "worker", "clock"]), st.integers(0, 50), max_size=3),
    checks=st.builds(Checks, disabled=st.booleans(), skipped=st.booleans(),
                     wait_to_retire=st.one_of(st.none(), st.integers(0, 3600)),
                     stop_timeout=st.one_of(st.none(), st.integers(0, 600))),
    builder=st.builds(Builder, selected=st.one_of(st.none(), st.sampled_from(["pack", "herokuish"])),
                      dockerfile_path=st.one_of(st.none(), st.sampled_from(["Dockerfile", "a/b.Dockerfile"]))),
    resources=st.dictionaries(
        st.sampled_from(["web", "worker", "_default_", "_build_"]),
        st.one_of(
            st.builds(ResourceLimit, memory=st.integers(6 << 20, 1 << 40), cpu=st.none()),
            st.builds(ResourceLimit, memory=st.one_of(st.none(), st.integers(6 << 20, 1 << 40)),
                      cpu=st.integers(1, 102400).map(lambda n: n / 100)),
        ),
        max_size=3),
    storage=st.builds(Storage, mounts=st.lists(
        st.from_regex(r"(?:[a-z0-9]{1,6}|/[a-z0-9]{1,6}):/(?:srv|app|data)/[a-z0-9]{1,6}(?::ro)?", fullmatch=True),
        max_size=3, unique_by=lambda m: m.split(":")[1]).map(tuple)),
    proxy=st.fixed_dictionaries({}, optional={
        "client-max-body-size": st.sampled_from(["0", "1k", "10m", "1g"]),
        "proxy-read-timeout": st.sampled_from(["1s", "5m", "2h"]), "hsts": st.sampled_from(["true", "false"]),
        "x-forwarded-for-value": st.sampled_from(["$remote_addr", "$http_x_forwarded_for"]),
        "access-log-path": st.sampled_from(["off", "/var/log/nginx/a.log"])}),
))
def test_settings_round_trip(settings: AppSettings) -> None:
    assert parse_settings(render_settings(settings)) == settings


def test_docker_options_and_networks_round_trip_and_bad_ones_are_one_line() -> None:
    text = ('[docker_options]\ndeploy = ["--shm-size 128m", "--privileged"]\nrun = ["--shm-size 128m"]\n'
            '[network]\nattach_post_create = ["backend"]\ninitial_network = "front"\n')
    s = parse_settings(text)
    assert s.docker_options.as_dict() == {"deploy": ["--shm-size 128m", "--privileged"], "run": ["--shm-size 128m"]}
    assert s.network.as_dict() == {"attach-post-create": ["backend"], "initial-network": ["front"]}
    assert parse_settings(render_settings(s)) == s
    for bad, reason in (('[docker_options]\ndeploy = ["--memory 1g"]', "resource:limit"),
                        ('[docker_options]\nbuild = ["--frob"]', "unsupported option"),
                        ('[network]\ninitial_network = "host"', "engine's own network"),
                        ('[network]\nattach_post_deploy = ["a", "a"]', "listed twice")):
        with pytest.raises(ConfigFileError) as e:
            parse_settings(bad)
        assert reason in e.value.message and "\n" not in e.value.message
