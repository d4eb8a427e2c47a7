"""A real HTTP server on 127.0.0.1:0 that records requests and answers from a script.

Tests queue answers (`then(503)`, `then(200, delay=7)`) and await requests
instead of sleeping: `await target.wait_for(n)` returns once n have arrived.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    delay: float = 0.0
    body: object = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)


class HttpTarget:
    def __init__(self, default: Answer | None = None) -> None:
        self.received: list[Received] = []
        self.answers: list[Answer] = []
        self.default = default or Answer()
        self.concurrent = 0
        self.max_concurrent = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, status: int, **kwargs: object) -> HttpTarget:
        self.answers.append(Answer(status=status, **kwargs))  # type: ignore[arg-type]
        return self

    async def start(self) -> HttpTarget:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        answer = self.answers.pop(0) if self.answers else self.default
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            received = Received(
                request.method, request.path_qs, dict(request.headers), await request.read()
            )
            async with self._arrived:
                self.received.append(received)
                self._arrived.notify_all()
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        finally:
            self.concurrent -= 1


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free loopback port; the runner stops it."""
    # A test may leave a deliberately slow answer pending: do not wait for it at stop.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
