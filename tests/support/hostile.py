"""A hostile HTTP target and a seeded generator of adversarial messages, for test_hostile.

The target answers what a broken or malicious API would: 64 KiB of raw control
characters, 300 MB streamed without end in sight, a redirect to another origin,
and an echo of the request in the encodings a secret could leak in.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.http_target import serve

CONTROL = "".join(chr(c) for c in range(1, 32) if chr(c) not in "\r\n")
CHUNK = b"x" * (1024 * 1024)


@dataclass
class HostileTarget:
    """`/control`: 64 KiB of control characters; `/huge`: `huge_mb` MB streamed;
    `/echo...`: 500 with the path and the base64 of `X-Token`; `/to/<url>`: a 302 there."""

    huge_mb: int = 300
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    sent_bytes: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> HostileTarget:
        app = web.Application()
        app.router.add_route("*", "/control", self._control)
        app.router.add_route("*", "/huge", self._huge)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)
        app.router.add_route("*", "/to/{tail:.*}", self._redirect)
        app.router.add_route("*", "/{tail:.*}", self._ok)
        self._runner, self.port = await serve(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request) -> None:
        self.requests.append((request.path_qs, dict(request.headers)))

    async def _control(self, request: web.Request) -> web.Response:
        self._record(request)
        text = (CONTROL * (64 * 1024 // len(CONTROL) + 1))[: 64 * 1024]
        return web.Response(text=text, content_type="text/plain")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = self.huge_mb * len(CHUNK)
        await response.prepare(request)
        try:
            for _ in range(self.huge_mb):
                await response.write(CHUNK)
                self.sent_bytes += len(CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading: what a capped reader should do
        return response

    async def _echo(self, request: web.Request) -> web.Response:
        self._record(request)
        token = request.headers.get("X-Token", "").encode()
        echo = {"path": request.raw_path, "b64": base64.b64encode(token).decode()}
        return web.json_response(echo, status=500)

    async def _redirect(self, request: web.Request) -> web.Response:
        self._record(request)
        target = request.raw_path.removeprefix("/to/")
        raise web.HTTPFound(target)

    async def _ok(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.json_response({"ok": True})


def nested(depth: int) -> bytes:
    return b'{"x":' + b"[" * depth + b"]" * depth + b"}"


@dataclass
class Fuzzer:
    """Random and adversarial messages (payload bytes, headers), reproducible by seed."""

    seed: int
    rng: random.Random = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def message(self) -> tuple[bytes, dict[str, str]]:
        self.count += 1
        kind = self.rng.choice(
            [self._json, self._json, self._json, self._bytes, self._nested, self._big]
        )
        return kind(), self._headers()

    def webhook(self) -> tuple[bytes, str]:
        """A webhook body and its content type: mostly valid-looking, often broken."""
        alerts = [self._alert() for _ in range(self.rng.randint(0, 3))]
        group: dict[str, object] = {
            "version": self.rng.choice(["4", "4", 4, "3"]),
            "alerts": alerts,
        }
        body = json.dumps(group).encode()
        mangle = self.rng.random()
        if mangle < 0.1:
            body = body[: self.rng.randint(0, len(body))]
        elif mangle < 0.2:
            body = nested(self.rng.choice([10, 1000, 100000]))
        elif mangle < 0.3:
            body = body.replace(b'"alertname": "', b'"alertname": "\\ud800', 1)
        ctype = self.rng.choice(["application/json"] * 6 + ["text/plain", "", "application/x"])
        return body, ctype

    def _alert(self) -> dict[str, object]:
        self.count += 1
        name = self.rng.choice(["A", "B", self._text(20), "x" * 300])
        return {
            # Not "resolved": a resolved alert fires only rules that ask for it (no result).
            "status": self.rng.choice(["firing", "firing", "other"]),
            "labels": {"alertname": name, "n": self._value(2)},
            "annotations": {"a": self._value(2)},
            "startsAt": f"2026-12-03T00:00:{self.count % 60:02d}Z",
            "fingerprint": self.rng.choice([f"fp{self.count}-{self.seed}", "y" * 5000]),
        }

    def _json(self) -> bytes:
        value = {"k": self._value(4), "trace_id": self.rng.choice(["", "t" * 3000, "abc"])}
        if self.rng.random() < 0.3:
            return json.dumps(self._value(3)).encode()  # any JSON: often not an object
        text = json.dumps(value)
        if self.rng.random() < 0.2:
            text = text.replace("}", ', "inf": 1e999, "nan": NaN}', 1)
        return text.encode()

    def _bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.choice([0, 1, 10, 1000, 70000]))

    def _nested(self) -> bytes:
        return nested(self.rng.choice([100, 5000, 20000]))

    def _big(self) -> bytes:
        return json.dumps({"big": CONTROL * self.rng.choice([1000, 5000])}).encode()

    def _headers(self) -> dict[str, str]:
        headers = {"Nats-Msg-Id": f"fz-{self.seed}-{self.count}"}
        if self.rng.random() < 0.2:
            headers["Nats-Msg-Id"] += "-" + "m" * self.rng.choice([300, 5000])
        if self.rng.random() < 0.3:
            headers[self.rng.choice(["traceparent", "trace-id", "X-Any"])] = self._text(
                self.rng.choice([5, 60, 2000])
            )
        return headers

    def _value(self, depth: int) -> object:
        pick = self.rng.random()
        if depth <= 0 or pick < 0.4:
            return self.rng.choice(
                [None, True, 0, -1, 2**70, 1.5, self._text(10), "{{ 7*7 }}", "é\u2028\x00"]
            )
        if pick < 0.7:
            return [self._value(depth - 1) for _ in range(self.rng.randint(0, 3))]
        return {self._text(5): self._value(depth - 1) for _ in range(self.rng.randint(0, 3))}

    def _text(self, length: int) -> str:
        alphabet = string.printable.strip() + "é€𝄞"
        return "".join(self.rng.choice(alphabet) for _ in range(length))
