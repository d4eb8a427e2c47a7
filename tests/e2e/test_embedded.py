"""The zero-configuration default: `remediator run` with no NATS URL, then `remediator publish`."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nats

from tests.support.collect import stored_until
from tests.support.daemon import DaemonProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_embedded_server_runs_the_example_rule(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    port = free_port()
    proc = DaemonProcess(["--embedded-port", str(port)], tmp_path).start(timeout=60)
    url = f"nats://127.0.0.1:{port}"
    try:
        alert = {"labels": {"severity": "critical", "service": "web"}, "value": "97.5"}
        published = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "remediator",
                "publish",
                "high.cpu.alert",
                json.dumps(alert),
                "--nats",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(published.stdout)["stream"] == "ALERTS"
        nc = await nats.connect(url)
        try:
            (result,) = await stored_until(
                nc, "remediator.results.high-cpu-notify", lambda bodies: len(bodies) == 1
            )
        finally:
            await nc.drain()
    finally:
        assert proc.stop() == 0
    assert result["status"] == "succeeded"
    assert (tmp_path / ".remediator" / "jetstream").is_dir()
    assert f"embedded nats-server ready at {url}" in proc.logs()


async def test_sigterm_stops_the_embedded_server_without_a_stray_task_error(
    tmp_path: Path,
) -> None:
    """The server's log reader must end with the server, not raise after `stop` (issue 12 f)."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    proc = DaemonProcess(["--embedded-port", str(free_port())], tmp_path).start(timeout=60)
    assert proc.stop() == 0
    logs = proc.logs()
    assert "stopping: no new messages" in logs
    assert "Task exception was never retrieved" not in logs
    assert "AttributeError" not in logs
    assert "Traceback" not in logs
