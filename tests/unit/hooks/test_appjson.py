"""app.json parsing (scripts, healthchecks, formation) and the checks settings: one-line errors naming the field."""

from __future__ import annotations

import json

import pytest

from hooks.appjson import AppJson, parse_app_json, read_app_json
from pushdock.checks import Healthcheck, check_settings, healthchecks_of, parse_setting
from pushdock.errors import UsageError

FULL = {
    "name": "demo", "env": {"X": {"value": "1"}}, "buildpacks": [{"url": "heroku/python"}],
    "scripts": {"dokku": {"predeploy": "./manage.py migrate", "postdeploy": "echo done"}, "postdeploy": "heroku"},
    "formation": {"web": {"quantity": 2}, "worker": {"quantity": 0, "size": "standard-1X"}},
    "healthchecks": {"web": [
        {"type": "startup", "name": "ready", "path": "/health", "content": "ok", "attempts": 3, "timeout": 2,
         "wait": 1, "initialDelay": 0.5, "port": 5000, "description": "d"},
        {"type": "liveness", "path": "/live"},
    ], "worker": [{"command": "test -f /tmp/ok", "attempts": 2}, {"uptime": 3}]},
}


def test_full_app_json() -> None:
    aj = parse_app_json(json.dumps(FULL))
    assert aj.scripts == {"predeploy": "./manage.py migrate", "postdeploy": "echo done"}
    assert aj.formation == {"web": 2, "worker": 0}
    [ready] = healthchecks_of(aj.checks, "web")  # the liveness check is kept but not run at deploy
    assert ready == Healthcheck(process="web", name="ready", path="/health", content="ok", port=5000, attempts=3,
                                timeout=2.0, wait=1.0, initial_delay=0.5)
    assert [h.type for h in map(Healthcheck.from_dict, aj.checks["web"])] == ["startup", "liveness"]
    cmd, up = healthchecks_of(aj.checks, "worker")
    assert cmd.command == ("/bin/sh", "-c", "test -f /tmp/ok") and cmd.attempts == 2 and cmd.wait == 2.0
    assert up.uptime == 3.0 and up.name == "uptime"
    assert json.loads(json.dumps(aj.checks)) == aj.checks  # stored as JSON on the release


def test_defaults_and_absent_file(tmp_path) -> None:
    assert read_app_json(tmp_path) == AppJson()
    assert parse_app_json("{}") == AppJson()
    (tmp_path / "app.json").write_text('{"healthchecks": {"web": [{"path": "/"}]}}')
    [h] = healthchecks_of(read_app_json(tmp_path).checks, "web")
    assert (h.attempts, h.timeout, h.wait, h.initial_delay, h.name) == (5, 5.0, 2.0, 0.0, "/")


@pytest.mark.parametrize(("doc", "message"), [
    ("{", r"app\.json is not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"scripts": {"dokku": {"predeploy": 3}}}', r"scripts\.dokku\.predeploy must be a command string"),
    ('{"scripts": {"dokku": {"pre-deploy": "x"}}}', "unknown script 'pre-deploy'"),
    ('{"formation": {"web": {"quantity": -1}}}', r"formation\.web\.quantity must be a whole number from 0 to 50"),
    ('{"formation": {"web": {"quantity": "2"}}}', r"formation\.web\.quantity"),
    ('{"formation": {"release": {"quantity": 1}}}', "invalid process type 'release'"),
    ('{"healthchecks": {"web": {"path": "/"}}}', r"healthchecks\.web must be a list"),
    ('{"healthchecks": {"web": [{"path": "health"}]}}', r"healthchecks\.web\[0\]\.path must start with '/'"),
    ('{"healthchecks": {"web": [{"path": "/a b"}]}}', r"path must start with '/' and have no spaces"),
    ('{"healthchecks": {"web": [{"path": "/", "atempts": 3}]}}', "unknown key 'atempts'"),
    ('{"healthchecks": {"web": [{"path": "/", "attempts": 0}]}}', r"attempts must be a whole number from 1 to 100"),
    ('{"healthchecks": {"web": [{"path": "/", "timeout": "5"}]}}', r"timeout must be a number"),
    ('{"healthchecks": {"web": [{"name": "x"}]}}', "needs exactly one of path, command or uptime"),
    ('{"healthchecks": {"web": [{"path": "/", "uptime": 2}]}}', r"exactly one .*\(got path, uptime\)"),
    ('{"healthchecks": {"worker": [{"path": "/"}]}}', "path checks need the web process"),
    ('{"healthchecks": {"web": [{"path": "/", "type": "boot"}]}}', r"type must be one of startup"),
    ('{"healthchecks": {"web": [{"path": "/", "scheme": "https"}]}}', "only http"),
    ('{"healthchecks": {"web": [{"command": []}]}}', "command must be a string or a non-empty list"),
])
def test_bad_app_json_is_one_line(doc: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_app_json(doc)
    assert "\n" not in str(info.value)


def test_check_settings_defaults_and_values(ctx) -> None:
    ctx.state.create_app("demo")
    s = check_settings(ctx, "demo")
    assert (s.disabled, s.skipped, s.wait_to_retire, s.stop_timeout) == (False, False, 0.0, 3)
    for prop, value in (("disabled", "1"), ("skipped", "1"), ("wait-to-retire", "7"), ("stop-timeout", "20")):
        ctx.state.set("checks", "demo", prop, value)
    s = check_settings(ctx, "demo")
    assert (s.disabled, s.skipped, s.wait_to_retire, s.stop_timeout) == (True, True, 7.0, 20)
    ctx.state.set("checks", "demo", "stop-timeout", "garbage")
    assert check_settings(ctx, "demo").stop_timeout == 3
    assert (s.type, s.wait, s.uptime) == ("http", 10, None)  # Dokku's default wait, once type is uptime
    ctx.state.set("checks", "demo", "type", "uptime")
    ctx.state.set("checks", "demo", "wait", "4")
    assert check_settings(ctx, "demo").uptime == 4.0


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("wait-to-retire", "30", "30"), ("stop-timeout", "007", "7"), ("wait-to-retire", "-1", None),
    ("stop-timeout", "601", None), ("stop-timeout", "1.5", None), ("drain", "3", None),
    ("type", "uptime", "uptime"), ("type", "http", "http"), ("type", "tcp", None),
    ("wait", "5", "5"), ("wait", "0", None), ("wait", "601", None),
])
def test_parse_setting(key: str, value: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(UsageError):
            parse_setting(key, value)
    else:
        assert parse_setting(key, value) == ok


def test_comments_and_trailing_commas_are_accepted_as_dokku_does() -> None:
    text = """{
      // deploy tasks
      "scripts": {"dokku": {"predeploy": "echo 'http://x/*y*/', done",},},  /* trailing commas too */
      "formation": {"web": {"quantity": 2}, "worker": {"max_parallel": 1},},
    }"""
    aj = parse_app_json(text)
    assert aj.scripts == {"predeploy": "echo 'http://x/*y*/', done"}
    assert aj.formation == {"web": 2, "worker": 1} and aj.formation_fixed
    with pytest.raises(UsageError, match="unterminated /\\* comment at line 2"):
        parse_app_json('{\n /* "a": 1 }')
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_app_json('{"a": 1 // the brace is commented out }')


def test_formation_is_fixed_only_when_a_quantity_is_given() -> None:
    assert not parse_app_json('{"formation": {"web": {"max_parallel": 1}}}').formation_fixed
    assert not parse_app_json('{}').formation_fixed
    assert parse_app_json('{"formation": {"worker": {"quantity": 0}}}').formation_fixed


def test_cron_entries_in_dokku_format() -> None:
    aj = parse_app_json(json.dumps({"cron": [
        {"command": "python task.py", "schedule": "*/5 * * * *"},
        {"command": " echo  hi ", "schedule": "@daily", "maintenance": True, "concurrency_policy": "forbid"},
    ]}))
    assert aj.cron == [{"command": "python task.py", "schedule": "*/5 * * * *"},
                       {"command": "echo  hi", "schedule": "@daily", "maintenance": True}]
    assert parse_app_json("{}").cron == []


@pytest.mark.parametrize(("cron", "reason"), [
    ({"command": "x"}, "app.json cron must be a list"),
    (["x"], "app.json cron[0] must be an object"),
    ([{"command": "x", "schedule": "61 * * * *"}], "app.json cron[0]: invalid schedule '61 * * * *'"),
    ([{"command": "x", "schedule": "* * * *"}], "app.json cron[0]: schedule '* * * *' must have five fields"),
    ([{"command": "x", "schedule": "@reboot"}], "app.json cron[0]: unknown schedule '@reboot'"),
    ([{"command": "x", "schedule": 5}], "app.json cron[0].schedule must be a string"),
    ([{"command": "", "schedule": "@daily"}], "app.json cron[0].command must be a non-empty"),
    ([{"schedule": "@daily"}], "app.json cron[0].command must be a non-empty"),
    ([{"command": "a\nb", "schedule": "@daily"}], "must be one line"),
    ([{"command": "x", "schedule": "@daily", "when": 1}], "unknown key 'when'"),
    ([{"command": "x", "schedule": "@daily", "maintenance": "yes"}], "maintenance must be true or false"),
    ([{"command": "x", "schedule": "@daily", "concurrency_policy": "allow"}], 'only "forbid"'),
    ([{"command": "x", "schedule": "@daily"}, {"command": "x", "schedule": "@daily"}],
     "app.json cron[1] repeats an earlier entry"),
    ([{"command": "x", "schedule": "@daily"}] * 51, "at most 50"),
])
def test_bad_cron_entries_fail_with_one_line(cron, reason) -> None:
    with pytest.raises(UsageError) as e:
        parse_app_json(json.dumps({"cron": cron}))
    assert reason in e.value.message, e.value.message
    assert "\n" not in e.value.message
