"""The console of one replica shows what another did (SPEC §18), in headless chromium.

Replica A handles the alerts; replica B has no rule for them (its own stream and
durable), so every result B's console lists was published by A and reached B
through the results stream. The results list's filters live in the URL: they
survive a reload, and the page fits a 390 px screen.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nats.aio.client import Client

from remediator.model import RESULT_STATUSES
from tests.e2e.test_console import css, wait
from tests.support.browser import chromium, require_browser
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

HANDLER = """
rules:
  - name: restart-web-{u}
    on: ["{u}.alerts.>"]
    actions:
      - name: restart
        publish: {{subject: "{u}.actions.restart", json: {{host: "{{{{ event.host }}}}"}}}}
"""

IDLE = """
rules:
  - name: quiet-{u}
    on: ["{u}.quiet.>"]
    actions:
      - publish: {{subject: "{u}.actions.never", json: {{}}}}
"""


@pytest.fixture(autouse=True)
def _browser_present() -> None:
    require_browser()


def phone(driver: WebDriver) -> None:
    """A 390 px wide viewport, as a phone has (a headless window has a minimum width)."""
    metrics = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # type: ignore[no-untyped-call]


def replica(directory: Path, server: NatsServer, name: str, rules: str) -> DaemonProcess:
    (directory / "rules").mkdir(parents=True)
    (directory / "rules" / "r.yaml").write_text(rules)
    args = ["--rules", "rules", "--nats", server.url, "--stream", name, "--durable", name]
    return DaemonProcess(args, directory).start()


async def test_replica_b_shows_what_replica_a_did_and_filters_survive_a_reload(
    nc: Client, nats_server: NatsServer, tmp_path: Path, unique: str
) -> None:
    from selenium.webdriver.common.by import By

    a = replica(tmp_path / "a", nats_server, f"A{unique}", HANDLER.format(u=unique))
    b = replica(tmp_path / "b", nats_server, f"B{unique}", IDLE.format(u=unique))
    try:
        rule = f"restart-web-{unique}"
        with chromium(tmp_path / "profile", width=390, height=844) as driver:
            phone(driver)
            driver.get(f"http://127.0.0.1:{b.http_port}/#/results?rule={rule}&q=web-07")
            wait(driver, "the filter form", css("#filters"))
            for host in ("web-07", "web-08"):
                payload = json.dumps({"host": host}).encode()
                await nc.jetstream().publish(f"{unique}.alerts.{host}", payload)
            rows = css("#results tbody tr")
            wait(driver, "A's result for web-07 in B's console", lambda d: len(rows(d)) == 1)
            assert "succeeded" in rows(driver)[0].text  # type: ignore[attr-defined]
            driver.refresh()
            wait(driver, "the filtered list after a reload", lambda d: len(rows(d)) == 1)
            field = driver.find_element(By.CSS_SELECTOR, '#filters input[name="q"]')
            assert field.get_attribute("value") == "web-07"
            time = driver.find_element(By.CSS_SELECTOR, "#results time")
            # the absolute time on hover: the browser's zone, 24-hour clock, to the second
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( \S+)?", time.get_attribute("title") or ""
            )
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert driver.execute_script("return window.innerWidth") == 390
            assert width <= 390, f"the results list is {width}px wide on a 390px screen"
            driver.get(f"http://127.0.0.1:{b.http_port}/")
            wait(driver, "A's rule in B's overview", css(f'tr[data-rule="{rule}"]'))
            legend = driver.find_elements(By.CSS_SELECTOR, ".legend .badge")
            assert [e.text for e in legend] == list(RESULT_STATUSES)
            colours = {e.value_of_css_property("background-color") for e in legend}
            assert len(colours) == len(RESULT_STATUSES), "two statuses share a colour"
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"the overview is {width}px wide on a 390px screen"
    finally:
        a.stop()
        b.stop()
