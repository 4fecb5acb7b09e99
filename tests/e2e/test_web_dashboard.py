"""The dashboard in a real browser (selenium driving Debian's headless chromium) against a real `pushdock serve`
with Docker: sign in with a token, see the app, roll back, watch a deploy's log stream while a real `git push`
runs; a deployer sees only its apps; screenshots of the main pages go to docs/dashboard/."""

from __future__ import annotations

import json
import re
import shutil
import threading

import pytest

from tests.harness import ROOT, Server, unique

pytestmark = pytest.mark.docker

SHOTS = ROOT / "docs" / "dashboard"
SLOW_STEP = "RUN echo slow build step && sleep 10 && echo slow build step done\n"  # after COPY: never cached
WEB = "web: python3 -u /app/server.py\n"


def chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "chromium and chromium-driver are needed (scripts/setup.sh installs them)"
    return browser, driver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("dashboard")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def token(server: Server, name: str, *args: str) -> str:
    out = server.cli("tokens:add", name, *args).stdout
    return re.search(r"pdt_[A-Za-z0-9_-]+", out)[0]


def sign_in(browser, server: Server, secret: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    assert browser.current_url.endswith("/signin")
    browser.find_element(By.ID, "token").send_keys(secret)
    browser.find_element(By.ID, "signin").click()


def shot(browser, name: str, width: int = 1280, height: int = 900) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(width, height)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    browser.set_window_size(1280, 900)


def wait(browser, condition, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def test_sign_in_see_the_app_roll_back_and_watch_a_deploy(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    app = unique("dash")
    work = server.app_repo(app, body="one")
    server.commit(work, "procfile", {"Procfile": WEB})
    assert server.push(work, app).returncode == 0
    server.commit(work, "two", {"body.txt": "two\n"})
    assert server.push(work, app).returncode == 0
    assert server.get(app) == (200, "two")
    admin = token(server, "dash-admin")

    # sign in: the app is listed with its current release
    sign_in(browser, server, admin)
    wait(browser, lambda d: d.find_elements(By.ID, "apps"))
    row = browser.find_element(By.LINK_TEXT, app).find_element(By.XPATH, "./../..")
    assert "running" in row.text and "v2" in row.text and f"{app}.localhost" in row.text
    cookie = browser.get_cookie("pushdock_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(browser, "apps")

    # the app's page; roll back to v1 with the button (the confirm dialog accepted)
    browser.find_element(By.LINK_TEXT, app).click()
    wait(browser, lambda d: d.find_elements(By.ID, "rollback-v1"))
    assert "no token" not in browser.page_source and admin not in browser.page_source
    shot(browser, "app")
    browser.find_element(By.ID, "rollback-v1").click()
    wait(browser, lambda d: d.switch_to.alert).accept()
    wait(browser, lambda d: d.find_elements(By.ID, "note"))
    assert "rolled back to v1" in browser.find_element(By.ID, "note").text
    assert server.get(app) == (200, "one")
    v3 = browser.find_element(By.ID, "release-v3").text
    assert "current" in v3 and "dash-admin" in v3
    events = server.cli("events", "-n", "50", "--format", "json").stdout
    assert any(e["action"] == "releases:rollback" and e["door"] == "http" and e["who"] == "dash-admin"
               for e in json.loads(events))

    # a deploy's log streams into the page while the push runs (its build has a step of a few seconds)
    dockerfile = (work / "Dockerfile").read_text()
    server.commit(work, "three", {"body.txt": "three\n", "Dockerfile": dockerfile.replace("EXPOSE", SLOW_STEP + "EXPOSE")})
    result: dict[str, object] = {}
    pushing = threading.Thread(target=lambda: result.update(push=server.push(work, app)))
    builds_before = len(json.loads(server.cli("builds:list", app, "--format", "json").stdout))
    pushing.start()
    try:
        wait(browser, lambda d: len(json.loads(server.cli("builds:list", app, "--format", "json").stdout))
             > builds_before, 120)
        browser.get(f"http://127.0.0.1:{server.http_port}/apps/{app}")
        wait(browser, lambda d: "slow build step" in d.find_element(By.ID, "deploy-log").text, 180)
        assert pushing.is_alive(), "the log reached the page only after the push ended"
        assert "following" in browser.find_element(By.ID, "deploy-status").text
        shot(browser, "deploy-log")
    finally:
        pushing.join(300)
    assert result["push"].returncode == 0, result["push"].stderr
    wait(browser, lambda d: "finished: succeeded" in d.find_element(By.ID, "deploy-status").text, 60)
    assert "slow build step done" in browser.find_element(By.ID, "deploy-log").text
    assert server.get(app) == (200, "three")

    # the app's live logs: a request made after the page opened shows up in it
    browser.get(f"http://127.0.0.1:{server.http_port}/apps/{app}")
    wait(browser, lambda d: "following" in d.find_element(By.ID, "logs-status").text)
    marker = f"/live-{unique('m')}"

    def logged(d) -> bool:
        server.get(app, marker)
        return f"GET {marker}" in d.find_element(By.ID, "live-logs").text

    wait(browser, logged, 60)

    browser.get(f"http://127.0.0.1:{server.http_port}/events")
    wait(browser, lambda d: d.find_elements(By.ID, "events"))
    shot(browser, "events")
    browser.get(f"http://127.0.0.1:{server.http_port}/host")
    wait(browser, lambda d: d.find_elements(By.ID, "containers"))
    shown = browser.find_element(By.ID, "containers").text
    assert app in shown
    apps = {r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#containers tbody tr")}
    ours = {a["name"] for a in json.loads(server.cli("apps:list", "--format", "json").stdout)}
    assert apps <= ours, "containers of another pushdock on the same engine are shown"
    shot(browser, "host")
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    shot(browser, "apps-phone", 390, 844)


def test_a_deployer_sees_and_touches_only_its_apps(server, browser) -> None:
    from selenium.webdriver.common.by import By

    mine, other = unique("dmine"), unique("dother")
    server.cli("apps:create", mine)
    server.cli("apps:create", other)
    server.cli("certs:generate", mine)
    sign_in(browser, server, token(server, "dash-dep", "--role", "deployer", "--apps", mine))
    wait(browser, lambda d: d.find_elements(By.ID, "apps"))
    listed = browser.find_element(By.ID, "apps").text
    assert mine in listed and other not in listed
    expiry = json.loads(server.cli("certs:report", mine, "--format", "json").stdout)["expires"]
    row = browser.find_element(By.LINK_TEXT, mine).find_element(By.XPATH, "./../..")
    assert f"expires {expiry}" in row.text
    browser.get(f"http://127.0.0.1:{server.http_port}/apps/{other}")
    assert "you may see" in browser.find_element(By.ID, "error").text


def test_state_changes_need_the_csrf_token_and_sign_in_is_rate_limited(server) -> None:
    import http.client
    import urllib.parse

    # From an address of its own: the sign-in rate limit it exhausts is per client address and lasts its window;
    # a browser test (127.0.0.1) run after this one, in another order or alone, must not inherit it.
    source = ("127.0.0.2", 0)

    def post(path: str, fields: dict[str, str], cookie: str = "") -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30, source_address=source)
        conn.request("POST", path, body=urllib.parse.urlencode(fields),
                     headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        return resp.status, body, resp.getheader("Set-Cookie") or ""

    app = unique("dcsrf")
    server.cli("apps:create", app)
    # a forged sign-in form (no matching cookie) is refused before the token is even looked at
    assert post("/signin", {"token": "pdt_x", "csrf": "guess"})[0] == 403
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30, source_address=source)
    conn.request("GET", "/signin")
    resp = conn.getresponse()
    page = resp.read().decode()
    assert "script-src 'self'" in resp.getheader("Content-Security-Policy") and "<script>" not in page
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    signin_cookie = f"pushdock_signin={nonce}"
    conn.close()
    secret = token(server, "dash-csrf")
    status, _, set_cookie = post("/signin", {"token": secret, "csrf": nonce}, signin_cookie)
    assert status == 303 and "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    session = re.search(r"pushdock_session=([^;]+)", set_cookie)[1]
    assert session != secret
    # a state change without the session's CSRF token is refused and changes nothing
    status, body, _ = post(f"/apps/{app}/rollback", {"csrf": "forged", "release": "v1"}, f"pushdock_session={session}")
    assert status == 403 and "expired" in body
    assert json.loads(server.cli("releases", app, "--format", "json").stdout) == []
    statuses = [post("/signin", {"token": "pdt_wrong", "csrf": nonce}, signin_cookie)[0] for _ in range(12)]
    assert 429 in statuses and set(statuses) <= {401, 429}
    events = json.loads(server.cli("events", "-n", "100", "--format", "json").stdout)
    assert any(e["action"] == "dashboard:signin" and e["result"] == "denied" for e in events)
    assert not any(secret in json.dumps(e) for e in events)
    assert secret not in (server.data / "logs" / "pushdock.log").read_text()


def _request(server: Server, method: str, path: str, fields: dict[str, str] | None = None,
             cookie: str = "") -> tuple[int, str, dict[str, str]]:
    import http.client
    import urllib.parse

    # from an address of its own (127.0.0.2 is the rate-limit test's, 127.0.0.1 the browser's)
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30, source_address=("127.0.0.3", 0))
    headers = {"Cookie": cookie} if cookie else {}
    if fields is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=urllib.parse.urlencode(fields) if fields is not None else None, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body, {k.lower(): resp.getheader(k) or "" for k, _ in resp.getheaders()}  # repeated: joined


def _signed_in(server: Server, secret: str) -> str:
    """A session id, signed in over HTTP as a browser does (the sign-in form's double-submit cookie)."""
    _, page, _ = _request(server, "GET", "/signin")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    status, _, headers = _request(server, "POST", "/signin", {"token": secret, "csrf": nonce},
                                  f"pushdock_signin={nonce}")
    assert status == 303, status
    return re.search(r"pushdock_session=([^;]+)", headers["set-cookie"])[1]


def test_a_session_outlives_a_serve_restart_and_ends_at_sign_out_or_with_its_token(server) -> None:
    import hashlib
    import stat

    app = unique("dkeep")
    server.cli("apps:create", app)
    secret = token(server, "dash-keep")
    session = _signed_in(server, secret)
    cookie = f"pushdock_session={session}"
    store = server.data / "web" / "sessions"
    kept = store / hashlib.sha256(session.encode()).hexdigest()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700 and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert session not in kept.read_text() and secret not in kept.read_text()
    status, page, _ = _request(server, "GET", "/", cookie=cookie)
    assert status == 200 and app in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]

    # an upgrade restarts serve: the browser stays signed in, with the same CSRF token
    server.stop_serve()
    server.start()
    status, page, _ = _request(server, "GET", "/", cookie=cookie)
    assert status == 200 and app in page, (status, page[:300])
    assert re.search(r'name="csrf" value="([^"]+)"', page)[1] == csrf
    # a forged sign-out changes nothing; a real one ends the session and its file
    assert _request(server, "POST", "/signout", {"csrf": "forged"}, cookie)[0] == 303
    assert _request(server, "GET", "/", cookie=cookie)[0] == 200
    status, _, headers = _request(server, "POST", "/signout", {"csrf": csrf}, cookie)
    assert status == 303 and headers["location"].endswith("/signin")
    assert not kept.exists()
    assert _request(server, "GET", "/", cookie=cookie)[0] == 303

    # removing the token ends a stored session too, after a restart as before it
    session = _signed_in(server, secret)
    server.stop_serve()
    server.start()
    assert _request(server, "GET", "/", cookie=f"pushdock_session={session}")[0] == 200
    server.cli("tokens:remove", "dash-keep")
    status, _, headers = _request(server, "GET", "/", cookie=f"pushdock_session={session}")
    assert status == 303 and headers["location"].endswith("/signin")
    assert not (store / hashlib.sha256(session.encode()).hexdigest()).exists()
