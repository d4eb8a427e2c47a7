"""The `http` action: one HTTP request per attempt, classified for the retry loop.

4xx answers other than 408 and 429 are permanent (the request itself is
wrong); 408, 429, 5xx and connection failures are transient, and a
`Retry-After` header tells the engine how long to wait.

At most 64 KiB of an answer is read (the rest is never buffered). Redirects
are not followed unless the step says `follow_redirects: true`; then a hop to
another origin carries none of the step's own headers (they may hold secrets).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from remediator.actions.base import OUTPUT_CAP, StepContext, cap_text, optional, required
from remediator.errors import StepError

_TRANSIENT_4XX = frozenset({408, 429})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_OWN_HEADERS = frozenset({"idempotency-key", "trace-id", "traceparent"})
MAX_REDIRECTS = 10


class HTTPAction:
    """Calls HTTP APIs over one pooled client session."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        method = (optional(request, "method", str) or "GET").upper()
        url = required(request, "url", str)
        follow = bool(request.get("follow_redirects", False))
        options: dict[str, Any] = {
            "ssl": bool(request.get("verify_tls", True)),
            "json": request.get("json"),
            "data": _body(request),
            "headers": _headers(request, context),
            "params": _params(request),
            "allow_redirects": False,  # followed below, if at all, without leaking secrets
        }
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self._client().request(method, url, **options) as response:
                    target = _redirect(response) if follow else None
                    if target is None:
                        return await _outcome(response, request)
                method, url, options = _follow(method, url, target, response.status, options)
            raise StepError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")
        except aiohttp.ClientError as exc:
            raise StepError(f"{method} {url}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a ClientSession must be created inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session


async def _outcome(
    response: aiohttp.ClientResponse, request: Mapping[str, object]
) -> dict[str, object]:
    # Read at most OUTPUT_CAP bytes: a huge answer must not be held in memory to be cut.
    data = await _read_capped(response)
    text = _text(data, response.charset)
    output = {"status": response.status, "body": _decode(text, response)}
    _check_status(response, _expected(request), output)
    return output


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < OUTPUT_CAP and (chunk := await response.content.read(OUTPUT_CAP - size)):
        chunks.append(chunk)
        size += len(chunk)
    if size >= OUTPUT_CAP:
        response.close()  # the rest is never read: drop the connection, not the pool
    return b"".join(chunks)


def _text(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", "replace")


def _redirect(response: aiohttp.ClientResponse) -> URL | None:
    location = response.headers.get("Location")
    if response.status not in _REDIRECTS or not location:
        return None
    return response.url.join(URL(location))


def _follow(
    method: str, url: str, target: URL, status: int, options: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """The next request of a followed redirect. 307 and 308 keep the method and body,
    the others become a GET without one. To another origin (scheme, host, port) only the
    headers the daemon sets itself go along: the step's own headers (Authorization,
    Cookie, anything rendered from `secret()`) stay with the origin they were meant for."""
    options = dict(options, params=None)
    if status not in (307, 308):
        method = "GET" if method != "HEAD" else method
        options.update(json=None, data=None)
    if URL(url).origin() != target.origin():
        headers = options["headers"]
        options["headers"] = {k: v for k, v in headers.items() if k.lower() in _OWN_HEADERS}
    return method, str(target), options


def _headers(request: Mapping[str, object], context: StepContext) -> dict[str, str]:
    headers = {"Idempotency-Key": context.idempotency_key, "trace-id": context.trace_id}
    if len(context.trace_id) == 32:
        headers["traceparent"] = f"00-{context.trace_id}-{context.trace_id[:16]}-01"
    given = optional(request, "headers", Mapping) or {}
    headers.update({str(k): str(v) for k, v in given.items()})
    return headers


def _params(request: Mapping[str, object]) -> dict[str, str] | None:
    given = optional(request, "params", Mapping)
    return None if given is None else {str(k): str(v) for k, v in given.items()}


def _body(request: Mapping[str, object]) -> bytes | None:
    body = request.get("body")
    return None if body is None else str(body).encode()


def _expected(request: Mapping[str, object]) -> frozenset[int] | None:
    given = request.get("expect_status")
    if given is None:
        return None
    values = given if isinstance(given, list) else [given]
    try:
        return frozenset(int(str(v)) for v in values)
    except (TypeError, ValueError) as exc:
        raise StepError(f"expect_status: not a status code: {given!r}", permanent=True) from exc


def _decode(text: str, response: aiohttp.ClientResponse) -> object:
    text = cap_text(text)
    if response.content_type.endswith("json"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply: keep the text
            pass
    return text


def _check_status(
    response: aiohttp.ClientResponse, expected: frozenset[int] | None, output: dict[str, object]
) -> None:
    status = response.status
    if (expected is None and 200 <= status < 300) or (expected and status in expected):
        return
    message = f"{response.method} {response.url}: HTTP {status} {response.reason or ''}".strip()
    permanent = 400 <= status < 500 and status not in _TRANSIENT_4XX
    if expected and 200 <= status < 300:
        permanent = True
    raise StepError(message, permanent=permanent, retry_after=_retry_after(response), output=output)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if not value or response.status not in (429, 503):
        return None
    if value.isdigit():
        return float(value)
    when = email.utils.parsedate_to_datetime(value) if value else None
    return None if when is None else max(0.0, when.timestamp() - time.time())
