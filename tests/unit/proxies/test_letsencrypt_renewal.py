"""letsencrypt's renewal bookkeeping: what is due, the backoff after failures, and the timer job.

No ACME server here: the failing attempts go to a closed local port (the client's real network error);
the issuing path itself is tested against pebble in tests/e2e/test_letsencrypt.py.
"""

from __future__ import annotations

import time

from proxies import plugin as proxies_plugin
from proxies.letsencrypt import service
from pushdock.bus import Bus
from pushdock.context import Context
from pushdock.state import GLOBAL, Release
from tests.conftest import free_port


def _deployed(ctx: Context, app: str) -> None:
    ctx.state.create_app(app)
    ctx.state.promote_release(Release(app=app, number=1, image="x", env={}, processes={"web": "x"},
                                      formation={"web": 1}))
    ctx.state.set(service.PLUGIN, app, "enabled", "true")


def test_failures_back_off_and_each_attempt_is_an_event(ctx: Context) -> None:
    _deployed(ctx, "web")
    ctx.state.set(service.PLUGIN, GLOBAL, "server", f"http://127.0.0.1:{free_port()}/dir")
    now = time.time()
    assert service.due(ctx, "web", now, backoff=True)  # enabled, no certificate yet
    result = service.renew(ctx, backoff=True)
    assert result["web"].endswith("the ACME server is unreachable (ConnectionError)"), result
    assert not service.due(ctx, "web", time.time(), backoff=True)  # waits a day
    assert service.due(ctx, "web", time.time() + service.DAY + 1, backoff=True)
    assert service.renew(ctx, backoff=True) == {}  # the daily job skips it meanwhile
    service.renew(ctx, ["web"])  # auto-renew APP does not wait
    renewal = ctx.state.get_json(service.PLUGIN, "web", "renewal")
    assert renewal["failures"] == 2
    assert 2 * service.DAY - 5 < renewal["next_attempt"] - renewal["last_attempt"] <= 2 * service.DAY
    events = [e for e in ctx.state.read_events(10) if e["action"] == "letsencrypt:renew"]
    assert [e["result"] for e in events] == ["failed", "failed"]
    assert service.report(ctx, "web")["failures"] == "2"


def test_apps_without_letsencrypt_are_never_due(ctx: Context) -> None:
    _deployed(ctx, "web")
    ctx.state.delete(service.PLUGIN, "web", "enabled")
    assert not service.due(ctx, "web", time.time(), backoff=False)
    assert service.renew(ctx) == {}


def test_serve_timer_gets_the_daily_renewal(ctx: Context) -> None:
    from gitserver.serve import _timer

    bus = Bus(ctx.settings.data_dir / "plugins", extra_plugins=(proxies_plugin,), entry_points=False)
    jobs = {name: schedule for part in bus.call("timer_jobs", ctx=ctx) for name, (schedule, _) in part.items()}
    assert jobs == {"letsencrypt:renew": "@daily"}
    timer = _timer(ctx)  # serve's own timer, with the installed plugins
    try:
        assert "plugin:letsencrypt:renew" in timer.names()
        due = timer.next_run("plugin:letsencrypt:renew")
        assert due is not None and 0 < due - time.time() <= service.DAY
    finally:
        timer.stop()
