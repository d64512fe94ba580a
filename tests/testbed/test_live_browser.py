"""The live page in a real browser (headless Chromium, the shared ``browser`` fixture of
tests/conftest.py): its numbers grow and end at summary.json; nothing is fetched from elsewhere."""

from __future__ import annotations

import json
import time

import pytest

from tests.testbed.test_live import FINAL, Cli


def _number(driver, element_id: str) -> int:
    text = driver.find_element("id", element_id).text.replace(",", "")
    return int(text) if text.isdigit() else -1


@pytest.mark.browser
def test_the_page_counts_up_to_the_summary(browser, tmp_path):
    cli = Cli("run", "-t", "mesh", "-n", "7", "--backend", "local", "--bandwidth", "5000", "--no-plots",
              "--live", "0", "--out", str(tmp_path))
    try:
        load = browser.visit(cli.url())
        assert load.errors() == []
        origin = cli.url().split("/", 3)[:3]
        assert all(u.split("/", 3)[:3] == origin for u in load.requests), load.requests  # served here, no CDN
        browser = browser.driver
        seen = []
        while not cli.has(FINAL) and cli.proc.poll() is None:
            seen.append(_number(browser, "deliveries"))
            time.sleep(0.1)  # a look every 0.1 s while the page polls every second
        cli.wait_for(FINAL)
        summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
        end = time.monotonic() + 10
        while _number(browser, "deliveries") != summary["deliveries"] and time.monotonic() < end:
            time.sleep(0.1)  # the page's next poll shows the end
        assert _number(browser, "deliveries") == summary["deliveries"]
        assert _number(browser, "expected") == summary["expected_deliveries"]
        assert _number(browser, "bytes") == summary["bytes"]
        assert browser.find_element("id", "status").text == "ended"
        rows = browser.find_elements("css selector", "#peers tbody tr")
        assert [int(r.find_element("class name", "delivered").text.replace(",", "")) for r in rows] == [
            r["received"] for r in summary["peers"]]
        assert len(browser.find_elements("css selector", "#topo line")) == 21  # mesh-7's edges
        counts = [x for x in seen if x >= 0]
        assert counts == sorted(counts)
        assert any(0 < x < summary["deliveries"] for x in counts), f"no intermediate count among {counts}"
    finally:
        cli.stop()
