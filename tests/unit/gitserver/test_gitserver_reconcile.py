"""serve's background reconcile: an app whose lock another process holds waits without keeping others waiting."""

from __future__ import annotations

import time

from gitserver.reconcile import WAITING, Reconciler
from pushdock.context import Context
from tests.unit.web.test_web_door import get
from web.door import HttpDoor


def test_a_held_app_waits_and_is_reported_until_its_lock_frees(ctx: Context) -> None:
    for app in ("held", "free"):
        ctx.state.create_app(app)
    reconciler = Reconciler(ctx)
    door = HttpDoor(ctx, health=lambda: {"reconciling": reconciler.pending()})
    door.start()
    try:
        with ctx.state.app_lock("held", timeout=5):  # a separate open file: flock conflicts as across processes
            reconciler.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and reconciler.pending() != {"held": WAITING}:
                time.sleep(0.02)
            assert reconciler.pending() == {"held": WAITING}
            assert get(door.address[1], "/healthz")[1]["reconciling"] == {"held": WAITING}
        assert reconciler.wait(10)
        assert reconciler.pending() == {}
        assert get(door.address[1], "/healthz") == (200, {"status": "ok", "version": "0.1.0", "reconciling": {}})
    finally:
        reconciler.stop()
        door.stop()
