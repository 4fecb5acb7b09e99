"""Plugins: what loads and what runs (the bus), Python plugins' failures kept, the allow-list; sink URIs.

Third-party Python plugins are real distributions: a `*.dist-info` directory with an entry_points.txt put on
sys.path, found by importlib.metadata as an installed package is.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.logship import parse
from pushdock.plugins import DISABLED, RECORD, scan


def script(root: Path, plugin: str, trigger: str, body: str) -> Path:
    p = root / plugin / trigger
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(p, 0o755)
    return p.parent


def test_disabled_or_broken_script_plugins_do_not_run(tmp_path: Path) -> None:
    script(tmp_path, "good", "post-create", 'echo "good $1"')
    off = script(tmp_path, "off", "post-create", 'echo "off $1"')
    (off / DISABLED).touch()
    bad = script(tmp_path, "bad", "post-create", 'echo "bad $1"')
    (bad / "plugin.toml").write_text("[plugin]\nnmae = 'typo'\n")
    unexecutable = script(tmp_path, "unexecutable", "post-create", "exit 1")
    os.chmod(unexecutable / "post-create", 0o644)
    (tmp_path / ".staging-x").mkdir()  # pushdock's own, never a plugin

    assert Bus(tmp_path, entry_points=False).call("post_create", ctx=None, app="web") == ["good web"]
    found = {p.name: p for p in scan(tmp_path)}
    assert sorted(found) == ["bad", "good", "off", "unexecutable"]
    assert found["bad"].error == "plugin.toml: unknown key plugin.nmae (known: name, version, description)"
    assert found["unexecutable"].error == "trigger post-create is not an executable file"
    assert found["off"].error is None and not found["off"].enabled and found["good"].runs


def dist(site: Path, name: str, module: str, source: str) -> None:
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"  # as installers name it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\nSummary: a test plugin\n")
    (info / "entry_points.txt").write_text(f"[pushdock]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)


def test_a_python_plugin_that_fails_to_load_is_kept_out_with_its_error(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    dist(site, "pd-broken-import", "pd_broken_import", "raise ImportError('no module named nowhere')\n")
    dist(site, "pd-misspelt", "pd_misspelt",
         "from pushdock.specs import hookimpl\n\n@hookimpl\ndef post_craete(ctx, app):\n    pass\n")
    dist(site, "pd-fine", "pd_fine",
         "from pushdock.specs import hookimpl\n\n@hookimpl\ndef post_create(ctx, app):\n    return 'fine ' + app\n")
    monkeypatch.syspath_prepend(str(site))
    plugins = tmp_path / "plugins"
    for name in ("pd-broken-import", "pd-misspelt", "pd-fine"):
        (plugins / name).mkdir(parents=True)
        (plugins / name / RECORD).write_text(f'{{"kind": "python", "package": "{name}", "source": "{name}"}}')

    bus = Bus(plugins)  # the built-ins load as ever; the broken ones are left out
    assert bus.load_errors["pd-broken-import"] == "ImportError: no module named nowhere"
    assert "post_craete" in bus.load_errors["pd-misspelt"] and "pd-fine" not in bus.load_errors
    assert bus.pm.get_plugin("pd_fine") is not None and bus.pm.get_plugin("pd_misspelt") is None
    listed = {p.name: p for p in scan(plugins, bus.load_errors)}
    assert listed["pd-broken-import"].error == "ImportError: no module named nowhere"
    assert listed["pd-fine"].runs and listed["pd-fine"].version == "0.1"

    (plugins / "pd-fine" / DISABLED).touch()
    assert Bus(plugins).pm.get_plugin("pd_fine") is None


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(argv), ctx, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_python_packages_only_from_the_allow_list(ctx: Context) -> None:
    rc, _, err = run(ctx, "plugin:install", "left-pad")
    assert (rc, err.splitlines()[0]) == (13, "error: Python package left-pad is not on the plugin allow-list")
    assert scan(ctx.state.path("plugins")) == []


def test_plugin_commands_are_admin_only(ctx: Context) -> None:
    from pushdock.state import Identity

    ctx.identity = Identity(name="ci", role="deployer", door="ssh", apps=("web",))
    for argv in (["plugin:list"], ["plugin:install", "/tmp"], ["plugin:trigger", "post-create", "web"],
                 ["logs:set", "web", "vector-sink", "syslog://127.0.0.1:514"]):
        rc, _, err = run(ctx, *argv)
        assert rc == 13 and "admin only" in err, (argv, err)


@pytest.mark.parametrize(("uri", "driver", "address", "options"), [
    ("syslog://logs.example.com:514", "syslog", "udp://logs.example.com:514", {"syslog-format": "rfc5424"}),
    ("syslog+tcp://10.0.0.5:601?format=rfc3164", "syslog", "tcp://10.0.0.5:601", {"syslog-format": "rfc3164"}),
    ("syslog+tls://logs.example.com:6514", "syslog", "tcp+tls://logs.example.com:6514", {}),
    ("gelf://[::1]:12201", "gelf", "udp://[::1]:12201", {"labels": "pushdock.app,pushdock.process"}),
    ("gelf+tcp://graylog:12201", "gelf", "tcp://graylog:12201", {}),
])
def test_sink_uris_become_engine_log_configs(uri, driver, address, options) -> None:
    config = parse(uri).log_config("web", "worker")
    assert config["type"] == driver
    assert config["config"][f"{driver}-address"] == address and config["config"]["tag"] == "web.worker"
    assert options.items() <= config["config"].items()


@pytest.mark.parametrize("uri", ["http://logs:80", "https://logs/x", "syslog://logs", "syslog://logs:0",
                                 "syslog://logs:70000", "syslog://u:p@logs:514", "syslog://logs:514/path",
                                 "syslog://logs:514?format=json", "gelf://logs:1?format=rfc5424", "ftp://logs:21",
                                 "syslog://-bad-:514", "syslog://logs:514 --privileged", "syslog:///x:1"])
def test_bad_sink_uris_are_one_line_errors(uri) -> None:
    with pytest.raises(UsageError) as e:
        parse(uri)
    assert "\n" not in e.value.message


def test_git_fetches_never_prompt_nor_use_the_hosts_credentials(ctx: Context, tmp_path: Path, monkeypatch) -> None:
    """A repository that asks for credentials (401) gets none: no prompt, no credential helper of the host's
    user (HOME's git config has one with a password for it), no askpass; the install is one line and leaves
    nothing behind."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Door(BaseHTTPRequestHandler):
        def do_GET(self):  # type: ignore[no-untyped-def]
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Door)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    (home / ".git-credentials").write_text(f"http://u:leaked-password@127.0.0.1:{port}\n")
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\ntouch {tmp_path}/asked\necho leaked\n")
    askpass.chmod(0o755)
    for k, v in {"HOME": str(home), "GIT_ASKPASS": str(askpass), "SSH_ASKPASS": str(askpass)}.items():
        monkeypatch.setenv(k, v)
    try:
        rc, _, err = run(ctx, "plugin:install", f"http://127.0.0.1:{port}/notify.git")
    finally:
        srv.shutdown()
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: git clone of http://127.0.0.1:")
    assert "terminal prompts disabled" in err or "Authentication failed" in err, err
    assert seen and not any(seen), seen  # asked, and never answered with the stored password
    assert not (tmp_path / "asked").exists()
    assert sorted(os.listdir(ctx.state.path("plugins"))) == []
