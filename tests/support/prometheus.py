"""A real Prometheus for tests, scraping a small exporter the test controls.

Debian's `prometheus` binary is started on a free loopback port with its own config
and TSDB in a temporary directory, scraping every second an aiohttp exporter whose
metrics text the test sets (`exporter.set(...)`). `start` returns once the target is
up and a sample of it can be queried (polled with a deadline); `stop` ends the process
by its own pid. Without the binary the tests are skipped, unless
`REMEDIATOR_REQUIRE_PROMETHEUS=1` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.http_target import serve
from tests.support.nats import stop_process

UP = 'up{job="exporter"} == 1'
PROMETHEUS = Path("/usr/bin/prometheus")
REQUIRE_ENV = "REMEDIATOR_REQUIRE_PROMETHEUS"


def require_prometheus() -> Path:
    """The prometheus binary, or skip the test (fail when the environment requires it)."""
    if PROMETHEUS.is_file() and os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    reason = f"Prometheus not installed at {PROMETHEUS}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(reason)


@dataclass
class Exporter:
    """Serves `/metrics` in the text format: gauges the test sets, by name and labels."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def set(self, name: str, value: float, **labels: str) -> None:
        self.samples[name, tuple(sorted(labels.items()))] = value

    def clear(self, name: str) -> None:
        for key in [k for k in self.samples if k[0] == name]:
            del self.samples[key]

    def text(self) -> str:
        lines = []
        for (name, labels), value in sorted(self.samples.items()):
            inner = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{inner}}} {value!r}" if inner else f"{name} {value!r}")
        return "\n".join(lines) + "\n"

    def start(self) -> Exporter:
        """Serve from a thread of its own, so a module's tests share one exporter."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        future = asyncio.run_coroutine_threadsafe(serve(app), self._loop)
        self._runner, self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.text(), content_type="text/plain")


@dataclass
class Prometheus:
    """One prometheus process scraping `exporter` every second."""

    directory: Path
    exporter: Exporter
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Prometheus:
        binary = require_prometheus()
        self.port = free_port()
        config = self.directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: exporter\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{self.exporter.port}']}}]\n"
        )
        log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_up(timeout)
        return self

    def _wait_up(self, timeout: float) -> None:
        """Until the exporter's target is up and its sample can be queried."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": UP})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if json.loads(response.read())["data"]["result"]:
                        return
            except (OSError, ValueError, KeyError):
                pass  # not listening yet, or not ready
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus did not scrape its target in {timeout}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def log_text(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")

    async def query(self, query: str) -> list[dict[str, object]]:
        """The vector a query gives now (empty while Prometheus is not ready)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                body = json.loads(await response.text())
        except (aiohttp.ClientError, ValueError):
            return []
        data = body.get("data") or {}
        result = data.get("result")
        return result if data.get("resultType") == "vector" and isinstance(result, list) else []

    async def until(self, query: str, holds: object, timeout: float = 30.0) -> None:
        """Poll `query` until `holds(values)` (a list of floats) is true, with a deadline."""
        assert callable(holds)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise AssertionError(f"prometheus exited:\n{self.log_text()}")
                    samples = await self.query(query)
                    if holds([float(s["value"][1]) for s in samples]):  # type: ignore[index]
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"not within {timeout}s: {query}\n{self.log_text()}") from None

    async def sees(self, name: str, value: float, timeout: float = 30.0) -> None:
        """Until Prometheus has scraped `name` at `value` (the exporter was just set)."""
        await self.until(name, lambda values: value in values, timeout)


def free_port() -> int:
    """A port free now on 127.0.0.1 (Prometheus cannot be told to pick its own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_prometheus(directory: Path) -> Iterator[Prometheus]:
    """An exporter and a Prometheus scraping it, both stopped at the end."""
    require_prometheus()
    exporter = Exporter().start()
    server = Prometheus(directory, exporter)
    try:
        yield server.start()
    finally:
        server.stop()
        exporter.stop()
