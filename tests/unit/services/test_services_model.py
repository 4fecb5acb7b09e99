"""Service records, link variables and the timer-jobs sync of serve, through the real bus (no engine needed)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from gitserver.serve import PLUGIN_JOBS, _sync_plugin_jobs
from pushdock.bus import Bus
from pushdock.errors import Conflict, UsageError
from pushdock.specs import hookimpl
from pushdock.timer import Timer
from services import model
from services.postgres import Postgres


def test_credentials_are_generated_and_private(ctx) -> None:
    service, password = model.create(ctx.state, "postgres", "db")
    assert len(password) >= 32 and password != model.create(ctx.state, "postgres", "db2")[1]
    path = ctx.state.path("services", "postgres", "db", "credentials")
    assert os.stat(path).st_mode & 0o777 == 0o600 and model.password(ctx.state, service) == password
    with pytest.raises(Conflict):
        model.create(ctx.state, "postgres", "db")
    assert [s.name for s in model.all_of(ctx.state, "postgres")] == ["db", "db2"]


@pytest.mark.parametrize("name", ["", "Bad", "a_b", "-a", "a" * 64, "../x", "a b"])
def test_bad_names_are_one_line(name) -> None:
    with pytest.raises(UsageError, match="invalid postgres service name"):
        model.check_name("postgres", name)


def test_a_second_database_gets_a_variable_of_its_own(ctx) -> None:
    service, _ = model.create(ctx.state, "postgres", "other-db")
    ds = Postgres()
    assert model.choose_var(ds, service, {}, None) == "DATABASE_URL"
    assert model.choose_var(ds, service, {"DATABASE_URL": "x"}, None) == "PUSHDOCK_POSTGRES_OTHER_DB_URL"
    assert model.choose_var(ds, service, {"DATABASE_URL": "x"}, "REPORTS") == "REPORTS_URL"
    with pytest.raises(Conflict):
        model.choose_var(ds, service, {"REPORTS_URL": "x"}, "REPORTS")
    for alias in ("lower", "A-B", "X_URL", "1A"):
        with pytest.raises(UsageError):
            model.check_alias(alias)


def test_serve_keeps_the_timer_in_step_with_the_timer_jobs_trigger(ctx, tmp_path) -> None:
    wanted: dict[str, tuple[str, object]] = {"backup:a": ("@daily", lambda: None)}

    class Jobs:
        @hookimpl
        def timer_jobs(self, ctx):
            return dict(wanted)

    ctx.bus_override = Bus(tmp_path / "plugins", extra_plugins=(Jobs(),), entry_points=False)
    timer = Timer()
    _sync_plugin_jobs(ctx, timer)
    assert timer.names(PLUGIN_JOBS) == ["plugin:backup:a"]
    wanted.clear()
    wanted["backup:b"] = ("not a schedule", lambda: None)  # logged and skipped, never raised into the timer
    _sync_plugin_jobs(ctx, timer)
    assert timer.names(PLUGIN_JOBS) == []


@pytest.mark.parametrize("value, expected", [
    (None, ("127.0.0.1", None)),
    ("5433", ("127.0.0.1", 5433)),
    ("0.0.0.0:5433", ("0.0.0.0", 5433)),
    ("[::1]:6380", ("::1", 6380)),
])
def test_expose_addresses(value, expected) -> None:
    assert model.parse_expose("postgres", value) == expected


@pytest.mark.parametrize("value", ["0", "65536", "x", "localhost:5432", "1.2.3.4:", ":5432", "5432 ", "+5432",
                                   "1.2.3.4:5e3", "::1:5432"])
def test_bad_expose_addresses_are_one_line(value) -> None:
    with pytest.raises(UsageError, match=r"^postgres:expose takes \[ADDRESS:\]HOST_PORT") as e:
        model.parse_expose("postgres", value)
    assert "\n" not in e.value.message


def test_the_exposed_address_is_kept_in_the_record(ctx) -> None:
    service, _ = model.create(ctx.state, "redis", "cache")
    model.save(ctx.state, replace(service, exposed=("127.0.0.1", 6380)))
    assert model.get(ctx.state, "redis", "cache").exposed == ("127.0.0.1", 6380)
    model.save(ctx.state, replace(service, exposed=None))
    assert model.get(ctx.state, "redis", "cache").exposed is None


def test_counts_of_both_kinds_are_parsed() -> None:
    from services.postgres import Postgres
    from services.redis import Redis

    assert Postgres().parse_counts("public.notes 3\npublic.big 100000\n") == {"public.notes": 3, "public.big": 100000}
    assert Redis().parse_counts("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb2:keys=1,expires=1,avg_ttl=9\r\n") \
        == {"db0": 3, "db2": 1}
    assert Redis().parse_counts("# Keyspace\r\n") == {}
