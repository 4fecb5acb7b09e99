"""caddy's JSON for steered routes (proxies/caddy/config.py): upstreams at the stable address bypass the pool
while the app's `switching/APP` marker exists.

Pure rendering, no caddy process (tests/e2e/test_proxies.py runs the JSON in a real caddy).
"""

from __future__ import annotations

from typing import Any

from proxies.caddy import config
from proxies.model import Listener, Route
from pushdock.routing import Upstream

STABLE = config.Steered("127.99.1.1", "/data/caddy/switching")
HTTP = Listener("http", 8080)


def route(*upstreams: Upstream, tuning: tuple[tuple[str, str], ...] = ()) -> Route:
    return Route(app="web", domains=("web.test",), upstreams=upstreams, listeners=(HTTP,), tuning=tuning)


def proxy_handler(r: Route, steered: config.Steered | None) -> dict[str, Any]:
    [entry] = config.app_routes(r, steered).values()
    handler: dict[str, Any] = entry["handle"][-1]
    return handler


def test_steered_upstreams_bypass_the_pool_while_the_app_switches() -> None:
    handler = proxy_handler(route(Upstream(STABLE.address, 20000), Upstream(STABLE.address, 20001)), STABLE)
    assert handler["handler"] == "subroute"
    switching, otherwise = handler["routes"]
    assert switching["match"] == [{"file": {"root": STABLE.switching, "try_files": ["/web"]}}]
    assert switching["terminal"] is True
    [unpooled] = switching["handle"]
    [pooled] = otherwise["handle"]
    assert unpooled["transport"] == {"protocol": "http", "keep_alive": {"enabled": False}}
    assert "transport" not in pooled and pooled["handler"] == "reverse_proxy"
    assert {k: v for k, v in unpooled.items() if k != "transport"} == pooled


def test_other_upstreams_are_one_pooled_handler() -> None:
    for handler in (proxy_handler(route(Upstream("127.0.0.1", 5000)), STABLE),
                    proxy_handler(route(Upstream(STABLE.address, 20000)), None)):  # steering off
        assert handler["handler"] == "reverse_proxy" and "transport" not in handler


def test_read_timeout_is_kept_by_both_handlers() -> None:
    r = route(Upstream(STABLE.address, 20000), tuning=(("proxy-read-timeout", "90s"),))
    switching, otherwise = proxy_handler(r, STABLE)["routes"]
    assert switching["handle"][0]["transport"] == {
        "protocol": "http", "read_timeout": "90s", "keep_alive": {"enabled": False}}
    assert otherwise["handle"][0]["transport"] == {"protocol": "http", "read_timeout": "90s"}


def test_the_whole_document_and_a_plan_render_the_same_route() -> None:
    r = route(Upstream(STABLE.address, 20000))
    doc = config.full_config({"web": r}, HTTP, admin="unix//x", storage="/x", steered=STABLE)
    [exact] = [s for s in doc["apps"]["http"]["servers"]["p8080"]["routes"] if s.get("@id") == "p8080-exact"]
    [entry] = exact["handle"][0]["routes"]
    older = route(Upstream(STABLE.address, 20000), tuning=(("proxy-read-timeout", "90s"),))
    [(method, _path, body)] = config.plan({"web": older}, {"web": r}, {"web"}, HTTP, STABLE) or []
    assert method == "PATCH" and body == entry
