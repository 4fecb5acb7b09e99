"""caddy's JSON for steered routes (proxies/caddy/config.py): upstreams at the stable address are not pooled.

Pure rendering, no caddy process (tests/e2e/test_proxies.py runs the JSON in a real caddy).
"""

from __future__ import annotations

from typing import Any

from proxies.caddy import config
from proxies.model import Listener, Route
from pushdock.routing import Upstream

STABLE = "127.99.1.1"
HTTP = Listener("http", 8080)


def route(*upstreams: Upstream, tuning: tuple[tuple[str, str], ...] = ()) -> Route:
    return Route(app="web", domains=("web.test",), upstreams=upstreams, listeners=(HTTP,), tuning=tuning)


def proxy_handler(r: Route, steered: str | None) -> dict[str, Any]:
    [entry] = config.app_routes(r, steered).values()
    handler: dict[str, Any] = entry["handle"][-1]
    assert handler["handler"] == "reverse_proxy"
    return handler


def test_steered_upstreams_get_a_new_connection_per_request() -> None:
    steered = proxy_handler(route(Upstream(STABLE, 20000), Upstream(STABLE, 20001)), STABLE)
    assert steered["transport"] == {"protocol": "http", "keep_alive": {"enabled": False}}


def test_other_upstreams_keep_caddys_default_pooling() -> None:
    assert "transport" not in proxy_handler(route(Upstream("127.0.0.1", 5000)), STABLE)
    assert "transport" not in proxy_handler(route(Upstream(STABLE, 20000)), None)  # steering off


def test_read_timeout_and_no_pooling_share_one_transport() -> None:
    r = route(Upstream(STABLE, 20000), tuning=(("proxy-read-timeout", "90s"),))
    assert proxy_handler(r, STABLE)["transport"] == {
        "protocol": "http", "keep_alive": {"enabled": False}, "read_timeout": "90s"}


def test_the_whole_document_and_a_plan_render_the_same_route() -> None:
    r = route(Upstream(STABLE, 20000))
    doc = config.full_config({"web": r}, HTTP, admin="unix//x", storage="/x", steered=STABLE)
    [exact] = [s for s in doc["apps"]["http"]["servers"]["p8080"]["routes"] if s.get("@id") == "p8080-exact"]
    [entry] = exact["handle"][0]["routes"]
    older = route(Upstream(STABLE, 20000), tuning=(("proxy-read-timeout", "90s"),))
    [(method, _path, body)] = config.plan({"web": older}, {"web": r}, {"web"}, HTTP, STABLE) or []
    assert method == "PATCH" and body == entry
