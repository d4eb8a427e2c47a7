"""The HTTP listener: `/metrics`, `/healthz`, `/readyz`, the Alertmanager webhook, `/api/`.

One small aiohttp application. Liveness answers while the process can work
(it fails once the consume loop or the NATS connection died for good, while
the daemon exits non-zero);
readiness asks the daemon (connected to NATS and rules loaded), so a
Kubernetes Service only routes to replicas that can do work. The webhook
(`remediator.webhook`) is mounted once the daemon has a transport.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from remediator.errors import ConfigError
from remediator.http.api import ControlAPI
from remediator.http.guard import HostCheck, guarded
from remediator.http.webhook import MAX_BODY, PATH, AlertmanagerBridge

KEEPALIVE = 15.0  # seconds an idle client connection is kept open


class Listener:
    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        alive: Callable[[], bool] = lambda: True,
        check: HostCheck | None = None,
    ) -> None:
        self.registry = registry
        self.ready = ready
        self.alive = alive
        check = check or HostCheck(frozenset({"localhost"}), api_open=True, webhook_open=True)
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[guarded(check)])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    def add_webhook(self, bridge: AlertmanagerBridge) -> None:
        """Mount `POST /webhook/alertmanager`; before `start`."""
        self.app.router.add_post(PATH, bridge.handle)

    def add_api(self, api: ControlAPI) -> None:
        """Mount the control routes under `/api/`; before `start`."""
        api.mount(self.app)

    async def start(self, host: str, port: int) -> None:
        # Idle keep-alive connections are closed after KEEPALIVE s, and a webhook body
        # must arrive within webhook.BODY_TIMEOUT; headers are bounded in size by aiohttp.
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=KEEPALIVE)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:  # taken since `check`
            raise _cannot_listen(host, port, exc) from None

    @staticmethod
    async def check(host: str, port: int) -> None:
        """Fail fast, before NATS and the embedded server: a taken `--http` address is a
        one-line start-up error, not a traceback after everything else has started."""
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(asyncio.Protocol, host, port, start_serving=False)
        except OSError as exc:
            raise _cannot_listen(host, port, exc) from None
        server.close()
        await server.wait_closed()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="dead: exiting\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError(f"cannot listen on {host}:{port} (--http): {reason}")
