#!/usr/bin/env python3
"""The screenshots in docs/, taken from the real console: two replicas on a real
nats-server, realistic rules and alerts, Debian's headless chromium.

    python scripts/screenshots.py              # writes docs/console*.png
    python scripts/screenshots.py --out /tmp   # elsewhere

Two replicas run the same rules on one durable consumer, as the shipped manifests
do, so each handles some of the alerts; the pictures are taken from one of them
and show the results of both (the fleet's view). Everything binds
127.0.0.1 on free ports and is stopped by its own pid. Needs the test extras
(selenium) and chromium + chromedriver; run from the repository's root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from tests.support.browser import chromium  # noqa: E402
from tests.support.daemon import DaemonProcess  # noqa: E402
from tests.support.nats import NatsServer  # noqa: E402
from tests.support.poll import until  # noqa: E402

TOKEN = "screenshot-operator-token"
CONFIG = f"api: {{tokens: [{{name: alice, token: {TOKEN}, role: operator}}]}}\n"
RULES = """
rules:
  - name: restart-nginx
    description: restart nginx on a web host that stopped answering
    on: ["alerts.web.>"]
    throttle: {key: "{{ event.labels.instance }}", cooldown: 10m}
    actions:
      - name: restart
        publish: {subject: "ops.restart", json: {host: "{{ event.labels.instance }}"}}
      - name: tell-chat
        publish:
          subject: ops.chat
          json: {text: "restarted nginx on {{ event.labels.instance }}"}
  - name: scale-out-checkout
    description: add checkout replicas under load (being tried out)
    on: ["alerts.checkout.>"]
    dry_run: true
    actions:
      - name: scale
        http: {url: "http://127.0.0.1:9/apis/apps/v1/checkout/scale", method: PATCH}
  - name: clean-tmp
    description: free disk space on a full /tmp
    on: ["alerts.disk.>"]
    actions:
      - name: clean
        http: {url: "http://127.0.0.1:9/clean/{{ event.labels.instance }}"}
        timeout: 2s
  - name: failover-postgres
    description: promote the replica when the primary is down
    on: ["alerts.db.>"]
    approval: {timeout: 30m}
    actions:
      - name: promote
        publish: {subject: "ops.db.promote", json: {cluster: "{{ event.labels.cluster }}"}}
  - name: rotate-logs
    description: rotate logs when a volume fills
    on: ["alerts.logs.>"]
    actions:
      - publish: {subject: "ops.rotate", json: {host: "{{ event.labels.instance }}"}}
"""
ALERTS = [
    ("alerts.web.down", "NginxDown", "web-03", "critical"),
    ("alerts.web.down", "NginxDown", "web-03", "critical"),
    ("alerts.web.down", "NginxDown", "web-07", "critical"),
    ("alerts.checkout.load", "CheckoutLatencyHigh", "checkout-6f9c", "warning"),
    ("alerts.disk.full", "DiskFull", "batch-02", "warning"),
    ("alerts.logs.full", "LogVolumeFull", "api-11", "warning"),
    ("alerts.db.down", "PostgresPrimaryDown", "pg-eu-1a", "critical"),
]
SHOWN = "tr[data-rule], #results tr, article.approval"  # a view has drawn its data
SHOTS = {
    "console.png": ("/#/", (1280, 900)),
    "console-results.png": ("/#/results?q=web", (1280, 700)),
    "console-approval.png": (None, (1280, 800)),
    "console-phone.png": ("/#/", (390, 844)),
}


def replica(directory: Path, server: NatsServer) -> DaemonProcess:
    if not (directory / "rules").exists():
        (directory / "rules").mkdir(parents=True)
        (directory / "rules" / "r.yaml").write_text(RULES)
        (directory / "config.yaml").write_text(CONFIG)
    args = ["--rules", "rules", "--nats", server.url, "--stream", "ALERTS", "--durable", "fleet"]
    return DaemonProcess([*args, "--config", "config.yaml"], directory).start()


def api(proc: DaemonProcess, path: str, body: object | None = None) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{proc.http_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


async def fire(server: NatsServer, b: DaemonProcess) -> str:
    """Publish the alerts; wait for B to list every result; return the approval's id."""
    nc = await nats.connect(server.url)
    try:
        for subject, name, instance, severity in ALERTS:
            labels = {"alertname": name, "instance": instance, "severity": severity}
            if name.startswith("Postgres"):
                labels["cluster"] = "orders-eu"
            await nc.jetstream().publish(subject, json.dumps({"labels": labels}).encode())
    finally:
        await nc.drain()

    def listed() -> bool:
        found = api(b, "/api/results?limit=100")
        return isinstance(found, dict) and len(found["results"]) >= len(ALERTS)

    await until(listed, 30, "every result in replica B's list")
    approvals = api(b, "/api/approvals")
    assert isinstance(approvals, dict)
    return str(approvals["approvals"][0]["id"])


def shoot(b: DaemonProcess, approval: str, out: Path, profile: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = f"http://127.0.0.1:{b.http_port}"
    for name, (path, (width, height)) in SHOTS.items():
        with chromium(profile / name, width=max(width, 500), height=height) as driver:
            metrics = {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 500,
            }
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            driver.get(base + "/")
            driver.execute_script(f"localStorage.setItem('remediator.token', '{TOKEN}')")
            driver.get(base + (path or f"/#/approvals/{approval}"))
            driver.refresh()  # a new page: only the hash changed
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, SHOWN))
            driver.save_screenshot(str(out / name))
            print(f"wrote {out / name}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        server = NatsServer(store=work / "nats").start()
        started: list[DaemonProcess] = []
        try:
            for _ in range(2):
                started.append(replica(work, server))
            a, b = started
            approval = await fire(server, b)
            api(a, "/api/pause", {"rules": ["rotate-logs"], "reason": "disk swap on api-11"})
            shoot(b, approval, args.out, work / "profiles")
        finally:
            for proc in started:
                proc.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
