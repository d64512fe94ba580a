"""A real headless Chromium for tests: opens a page, returns what it logged and requested.

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``)
driven by selenium. ``Browser.open`` loads a file and returns every console message (the
``browser`` log, level ALL) and every URL the page asked for (the DevTools performance log's
``Network.requestWillBeSent``), so a test can assert "no errors, nothing fetched from the
network" of exactly that page.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Seconds a page may take to load or a condition to become true; a test page loads in well under one.
WAIT = 20.0


@dataclass(frozen=True)
class PageLoad:
    """What one page did while loading: console messages and requested URLs, in order."""

    console: tuple[dict[str, Any], ...]
    requests: tuple[str, ...]

    def errors(self) -> list[str]:
        """Console messages of level SEVERE (uncaught exceptions, failed loads, console.error)."""
        return [m["message"] for m in self.console if m.get("level") == "SEVERE"]

    def foreign_requests(self, root: Path) -> list[str]:
        """Requested URLs that are neither a file under ``root`` nor embedded (data:)."""
        prefix = root.resolve().as_uri() + "/"
        return [u for u in self.requests if not (u.startswith(prefix) or u.startswith("data:"))]


def missing_programs() -> list[str]:
    """What the browser tests need and this machine lacks: the system programs, selenium (dev extras)."""
    missing = [p for p in ("chromium", "chromedriver") if shutil.which(p) is None]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -e '.[dev]')")
    return missing


def start_driver():
    """A headless Chromium under the system chromedriver, logging console and network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(WAIT)
    return driver


class Browser:
    """One driver, many pages: each ``open`` sees only its own page's logs."""

    def __init__(self, driver) -> None:
        self.driver = driver

    def open(self, path: Path) -> PageLoad:
        """Load ``path`` (file://), wait until it is complete, return what it logged and requested."""
        return self.visit(Path(path).resolve().as_uri())

    def visit(self, url: str) -> PageLoad:
        """Load ``url``, wait until it is complete, return what it logged and requested so far."""
        self._drain()
        self.driver.get(url)
        self.wait_for("return document.readyState === 'complete'")
        console, requests = self._drain()
        return PageLoad(tuple(console), tuple(requests))

    @contextmanager
    def watching_vis_networks(self) -> Iterator[None]:
        """Pages opened inside keep the vis.Network objects they make in ``window.__visNetworks``."""
        added = self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH_VIS})
        try:
            yield
        finally:
            self.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})

    def run(self, script: str, *args: Any) -> Any:
        """The value of ``script`` (a function body: use ``return``) in the current page."""
        return self.driver.execute_script(script, *args)

    def wait_for(self, script: str, *args: Any) -> Any:
        """Wait until ``script`` returns a truthy value; return it."""
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT, poll_frequency=0.02).until(
            lambda d: d.execute_script(script, *args), message=f"never true: {script}"
        )

    def screenshot(self, out: Path, width: int = 1280) -> Path:
        """A PNG of the whole current page, ``width`` CSS pixels wide."""
        height = self.run("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, min(int(height) + 120, 16000))
        self.driver.save_screenshot(str(out))
        return out

    def _drain(self) -> tuple[list[dict[str, Any]], list[str]]:
        # Both logs are emptied by each read: what they hold now happened since the last one.
        console = self.driver.get_log("browser")
        requests = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
        return console, requests


# Keeps every vis.Network a page makes in window.__visNetworks, whatever the page exposes
# itself: the library is caught as it defines the global ``vis``, its constructor wrapped
# the first time the page reads ``vis.Network``.
_WATCH_VIS = """
(() => {
  const made = window.__visNetworks = [];
  let lib;
  Object.defineProperty(window, "vis", { configurable: true, set(v) { lib = v; }, get() {
    if (lib && lib.Network && !lib.Network.watched) {
      const Original = lib.Network;
      const Watched = function (...args) { const net = new Original(...args); made.push(net); return net; };
      Watched.prototype = Original.prototype;
      Watched.watched = true;
      lib.Network = Watched;
    }
    return lib;
  } });
})();
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
