"""The image's configuration on a real daemon, without Docker.

The build context's .dockerignore lets in exactly what the Dockerfile copies; the
HEALTHCHECK command (Python's urllib, run here as written) answers for the port in
REMEDIATOR_HTTP; and the pod's configuration (the image's ENV and CMD, the Deployment's
env, its Secret and the ConfigMap's rules, with only the NATS URL, paths and port
swapped for local ones) runs a daemon that serves the webhook and exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import nats
import pytest
from prometheus_client import CollectorRegistry

from remediator.http.listener import Listener
from tests.support import dockerfile
from tests.support.collect import Collector
from tests.support.daemon import free_port
from tests.support.manifests import container_env, daemon_container, manifest
from tests.support.nats import NatsServer

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything out, then what the build needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {s.rstrip("/") for s in dockerfile.copied_sources(DOCKERFILE)} == allowed


def healthcheck_command() -> list[str]:
    instruction = dockerfile.last(DOCKERFILE, "HEALTHCHECK")
    _, _, command = instruction.arguments.partition("CMD ")
    words = json.loads(command)
    assert words[0] == "python"
    return [sys.executable, *words[1:]]


async def run_healthcheck(environ: Mapping[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *healthcheck_command(),
        env=dict(environ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_asks_healthz_on_the_configured_port() -> None:
    port = free_port()
    environ = {**os.environ, "REMEDIATOR_HTTP": f"0.0.0.0:{port}"}
    listener = Listener(CollectorRegistry(), lambda: False)
    await listener.start("127.0.0.1", port)
    try:
        assert await run_healthcheck(environ) == 0  # healthy while /readyz says 503
    finally:
        await listener.stop()
    assert await run_healthcheck(environ) != 0


def image_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment in the pod: image ENV, the Secret's keys (envFrom), then
    the Deployment's env, which Kubernetes lets win over envFrom."""
    container = daemon_container()
    base = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    secrets: dict[str, str] = {}
    for source in container.get("envFrom", []):
        secrets.update(manifest("Secret", source["secretRef"]["name"])["stringData"])
    image = dockerfile.env(DOCKERFILE)
    return {**base, **image, **secrets, **container_env(container), **overrides}


def entrypoint_arguments() -> list[str]:
    entrypoint = dockerfile.last(DOCKERFILE, "ENTRYPOINT").exec_form()
    assert entrypoint[-1] == "remediator"
    return dockerfile.last(DOCKERFILE, "CMD").exec_form()


async def wait_ready(port: int, process: asyncio.subprocess.Process, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            assert process.returncode is None, "the daemon exited"
            try:
                status = await asyncio.to_thread(_status, f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)


def post(url: str, body: Mapping[str, object], token: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:  # closed now: an open socket would warn in a later test
            return exc.code


def alertmanager_body() -> dict[str, object]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighCPU", "severity": "critical", "deployment": "web"},
        "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "f00d",
    }
    return {"version": "4", "status": "firing", "receiver": "remediator", "alerts": [alert]}


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of its own: the manifest's rule listens on `alerts.HighCPU`."""
    server = NatsServer(store=tmp_path / "nats").start()
    yield server
    server.stop()


async def test_the_pod_configuration_runs_a_daemon(tmp_path: Path, own_nats: NatsServer) -> None:
    """The image's ENV and CMD plus the Deployment's env, Secret and rules, with only the
    NATS URL, paths and port swapped for local ones: ready, serves the webhook, passes the
    HEALTHCHECK, and exits 0 on SIGTERM."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in manifest("ConfigMap", "remediator-rules")["data"].items():
        (rules / name).write_text(text)
    port = free_port()
    environ = image_environment(
        {
            "REMEDIATOR_NATS_URL": own_nats.url,
            "REMEDIATOR_RULES": str(rules),
            "REMEDIATOR_HTTP": f"0.0.0.0:{port}",
            "REMEDIATOR_DATA_DIR": str(tmp_path / "data"),
            "REMEDIATOR_REPLICAS": "1",  # one local server, not the three-node cluster
        }
    )
    del environ["REMEDIATOR_CREDS"]  # the local server has no accounts
    command = [sys.executable, "-m", "remediator", *entrypoint_arguments()]
    with (tmp_path / "daemon.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=tmp_path, env=environ, stdout=log, stderr=log
        )
    nc = await nats.connect(own_nats.url)
    try:
        await wait_ready(port, process)
        results = await Collector.on(nc, "remediator.results.scale-out-web")
        url = f"http://127.0.0.1:{port}/webhook/alertmanager"
        token = environ["REMEDIATOR_WEBHOOK_TOKEN"]  # from the Secret, through envFrom
        assert await asyncio.to_thread(post, url, alertmanager_body(), "wrong") == 401
        assert await asyncio.to_thread(post, url, alertmanager_body(), token) == 200
        (result,) = await results.wait_for(1)
        assert result["status"] == "dry_run"
        assert environ["CHAT_TOKEN"] not in json.dumps(result)  # secret() is masked
        assert await run_healthcheck(environ) == 0
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await nc.drain()
        log_text = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log_text, log_text
