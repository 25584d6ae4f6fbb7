"""Browser test of the status page: Debian's headless chromium, driven by Debian's
chromium-driver through Selenium, against the real server binary.

It checks the semaphore rows, that a lock taken through the HTTP API shows up within 2 s without
a reload, a cluster member's members and their lag, that hostile names stay text, the phone and dark layouts, that the page loads nothing
from elsewhere, and saves a screenshot under load. Run it with `scripts/browser-test`.

Environment: THROTTLE_BIN (server binary, default target/debug/throttle, built when stale), CHROMIUM and
CHROMEDRIVER (default /usr/bin/chromium, /usr/bin/chromedriver), STATUS_SCREENSHOT (where the
screenshot goes, default target/browser/status-page.png).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "harness"))
import throttle_harness  # noqa: E402

# $THROTTLE_BIN, else this checkout's debug build, rebuilt first if stale.
BIN = throttle_harness.server_binary()
SCREENSHOT = Path(
    os.environ.get("STATUS_SCREENSHOT", REPO / "target" / "browser" / "status-page.png")
)

SAMPLE = """
[semaphores]
db = 8
gpu = 2
api = 5
jobs_mutex = { max = 1, level = 1 }
"""

HOSTILE = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "Datenbank 🚦 & 東京",
]


class Server:
    """The real throttle binary on a free port (started by the repository's harness), with a
    configuration of its own, and the few API calls the tests make."""

    def __init__(self, process: throttle_harness.Server, token: str | None) -> None:
        self.process = process
        self.url = process.url
        self.token = token

    def call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def peer(self, name: str | None = None) -> int:
        body: dict[str, object] = {"expires_in": "5m"}
        if name is not None:
            body["name"] = name
        return int(self.call("POST", "/new_peer", body)[1])

    def acquire(self, peer: int, semaphore: str, count: int) -> int:
        name = urllib.request.quote(semaphore, safe="")
        return self.call("PUT", f"/peers/{peer}/{name}", count)[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers = throttle_harness.Servers(tmp_path, BIN)

    def start(config: str, token: str | None = None) -> Server:
        env = {"THROTTLE_TOKEN": token} if token else {}
        return Server(servers.start_throttle(config, env=env, start_timeout=20), token)

    yield start
    servers.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not BIN.exists():
        pytest.fail(f"no server binary at {BIN}: set THROTTLE_BIN to one")
    profile = tempfile.TemporaryDirectory(prefix="throttle-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1000,800",
        f"--user-data-dir={profile.name}",
    ]:
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def table(driver: webdriver.Chrome, table_id: str) -> list[list[str]]:
    """The cell texts of a table's body, read in one script: the page replaces its rows every
    second, so element handles would go stale between calls."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(r => [...r.cells].map(c => c.textContent))",
        f"#{table_id} tbody tr",
    )


def column(driver: webdriver.Chrome, table_id: str, index: int) -> list[str]:
    """The texts of one column of a table's body."""
    return [row[index] for row in table(driver, table_id)]


def cell(driver: webdriver.Chrome, name: str, index: int) -> str:
    """One cell of the semaphore row called `name` ('' while the row is missing)."""
    for row in table(driver, "semaphores"):
        if row and row[0] == name:
            return row[index]
    return ""


ACQUIRED, PENDING = 3, 4

# Columns of the peers table.
PEER, HOLDER, HOLDS = 0, 1, 2


def test_page_shows_semaphores_and_follows_the_api_without_reload(
    browser: webdriver.Chrome, server: Callable[[str], Server]
) -> None:
    s = server(SAMPLE)
    browser.get(s.url + "/")
    assert browser.title == "Throttle status"
    snapshot = json.loads(s.call("GET", "/status.json")[1])
    names = [sem["name"] for sem in snapshot["semaphores"]]
    assert sorted(names) == ["api", "db", "gpu", "jobs_mutex"]
    assert column(browser, "semaphores", 0) == names
    assert cell(browser, "db", 2) == "8"
    assert cell(browser, "db", ACQUIRED) == "0"
    # The page must change by polling, not by a reload: a reload would drop this mark.
    browser.execute_script("window.notReloaded = true")

    peer = s.peer()
    assert s.acquire(peer, "db", 3) == 200
    taken = time.monotonic()
    WebDriverWait(browser, 2, poll_frequency=0.05).until(
        lambda d: cell(d, "db", ACQUIRED) == "3"
    )
    print(f"page showed the lock {time.monotonic() - taken:.2f} s after the acquire")
    assert browser.execute_script("return window.notReloaded") is True
    peers = column(browser, "peers", PEER)
    assert str(peer) in peers
    # Each held lock shows its fencing token.
    assert any(held.startswith("db ×3 #") for held in column(browser, "peers", HOLDS))
    assert "live" in browser.find_element(By.ID, "state").text
    # A single server is no cluster: no banner, no members, also after a refresh.
    assert not browser.find_element(By.ID, "cluster").is_displayed()
    assert not browser.find_element(By.ID, "members-section").is_displayed()

    # Nothing was loaded from anywhere but the server.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(r.startswith(s.url) for r in resources), resources


def test_a_cluster_member_shows_its_members_and_how_far_each_lags(
    browser: webdriver.Chrome, server: Callable[[str], Server], tmp_path: Path
) -> None:
    data = json.dumps(str(tmp_path / "data"))
    s = server(SAMPLE + f'\n[cluster]\nid = 1\nmembers = ["127.0.0.1:1"]\ndata_dir = {data}\n')
    deadline = time.monotonic() + 10
    while json.loads(s.call("GET", "/status.json")[1])["cluster"]["leader"] != 1:
        assert time.monotonic() < deadline, "the cluster of one elected no leader"
        time.sleep(0.05)
    browser.get(s.url + "/")
    assert browser.find_element(By.ID, "members-section").is_displayed()
    assert "this member leads" in browser.find_element(By.ID, "cluster").text
    [[member, role, reaches, lag]] = table(browser, "members")
    assert (member, role, lag) == ("1 (this member)", "leader", "0")
    browser.execute_script("window.notReloaded = true")

    # A grant is an entry of the log: the row follows it without a reload.
    assert s.acquire(s.peer(), "db", 1) == 200
    commit = json.loads(s.call("GET", "/status.json")[1])["cluster"]["commit"]
    assert commit > int(reaches)
    WebDriverWait(browser, 3, poll_frequency=0.05).until(
        lambda d: table(d, "members") == [["1 (this member)", "leader", str(commit), "0"]]
    )
    assert browser.execute_script("return window.notReloaded") is True
    note = browser.find_element(By.ID, "members-note").text
    assert note.startswith("Lag: entries the member's log is behind"), note


def test_hostile_names_are_text_in_the_server_render_and_after_refresh(
    browser: webdriver.Chrome, server: Callable[[str], Server]
) -> None:
    config = "[semaphores]\n" + "".join(
        f"{json.dumps(name, ensure_ascii=False)} = 3\n" for name in HOSTILE
    )
    s = server(config)
    browser.get(s.url + "/")
    for name in HOSTILE:
        assert cell(browser, name, 2) == "3", name
    # A holder name with markup in it, shown as text like the semaphore names.
    peer = s.peer(name=HOSTILE[0])
    assert s.acquire(peer, HOSTILE[0], 2) == 200
    WebDriverWait(browser, 2, poll_frequency=0.05).until(
        lambda d: cell(d, HOSTILE[0], ACQUIRED) == "2"
    )
    assert column(browser, "peers", HOLDER) == [HOSTILE[0]]
    for name in HOSTILE:
        assert cell(browser, name, 0) == name
    # The page's own script is the only one, and no injected image exists.
    assert browser.execute_script("return document.scripts.length") == 1
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    assert column(browser, "peers", HOLDS)[0].startswith(f"{HOSTILE[0]} ×2 #")


def test_phone_and_dark_layouts(
    browser: webdriver.Chrome, server: Callable[[str], Server]
) -> None:
    s = server(SAMPLE)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        browser.get(s.url + "/")
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert background == "rgb(21, 24, 28)", background
        # On a phone each row is a card of labelled cells, and nothing overflows sideways.
        header = browser.find_element(By.CSS_SELECTOR, "#semaphores thead")
        assert not header.is_displayed()
        label = browser.execute_script(
            "return getComputedStyle(document.querySelector('#semaphores td'), '::before').content"
        )
        assert label == '"Name"', label
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, width
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_screenshot_under_load(
    browser: webdriver.Chrome, server: Callable[[str], Server]
) -> None:
    s = server(SAMPLE)
    # db: full with two waiting; gpu: full with three waiting; api: partly used; the mutex held.
    holders = [("db", 5), ("db", 3), ("gpu", 1), ("gpu", 1), ("api", 3), ("jobs_mutex", 1)]
    waiters = [("db", 2), ("gpu", 1), ("db", 1), ("gpu", 2), ("gpu", 1)]
    for name, count in holders:
        assert s.acquire(s.peer(), name, count) == 200
    for name, count in waiters:
        assert s.acquire(s.peer(), name, count) == 202
        time.sleep(0.3)  # distinct waiting times
    browser.get(s.url + "/")
    WebDriverWait(browser, 3, poll_frequency=0.1).until(
        lambda d: "live" in d.find_element(By.ID, "state").text
    )
    assert cell(browser, "gpu", PENDING) == "4"
    assert cell(browser, "db", ACQUIRED) == "8"
    assert len(column(browser, "peers", 0)) == len(holders) + len(waiters)
    # Exactly 1000 px wide and as tall as the page: no scroll bar, nothing cut off.
    metrics = {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    metrics["height"] = browser.execute_script(
        "return document.documentElement.scrollHeight"
    )
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    print(f"screenshot: {SCREENSHOT} ({SCREENSHOT.stat().st_size} bytes)")


def test_with_a_token_the_page_asks_once_and_keeps_it_for_the_tab(
    browser: webdriver.Chrome, server: Callable[..., Server]
) -> None:
    s = server(SAMPLE, token="s3cret")
    # Without the token: the data route refuses, the page comes without data.
    assert s.call("GET", "/status.json", headers={"Authorization": ""})[0] == 401
    status, page = s.call("GET", "/", headers={"Accept": "text/html", "Authorization": ""})
    assert status == 200 and 'data-locked="yes"' in page and "jobs_mutex" not in page
    assert s.call("GET", "/", headers={"Accept": "text/html"})[1].count("jobs_mutex") == 1

    browser.get(s.url + "/")
    prompt = WebDriverWait(browser, 3).until(expected_conditions.alert_is_present())
    assert "token" in prompt.text
    prompt.send_keys("s3cret")
    prompt.accept()
    WebDriverWait(browser, 2, poll_frequency=0.05).until(lambda d: cell(d, "db", 2) == "8")
    assert browser.execute_script("return sessionStorage.getItem('throttle-token')") == "s3cret"
    # A reload in the same tab does not ask again.
    browser.refresh()
    WebDriverWait(browser, 2, poll_frequency=0.05).until(lambda d: cell(d, "db", 2) == "8")
    assert "live" in browser.find_element(By.ID, "state").text
