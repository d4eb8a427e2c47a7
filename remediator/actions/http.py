"""The `http` action: one HTTP request per attempt, classified for the retry loop.

4xx answers other than 408 and 429 are permanent (the request itself is
wrong); 408, 429, 5xx and connection failures are transient, and a
`Retry-After` header tells the engine how long to wait.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping

import aiohttp

from remediator.actions.base import StepContext, cap_text, optional, required
from remediator.errors import StepError

_TRANSIENT_4XX = frozenset({408, 429})


class HTTPAction:
    """Calls HTTP APIs over one pooled client session."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        method = (optional(request, "method", str) or "GET").upper()
        url = required(request, "url", str)
        try:
            async with self._client().request(
                method,
                url,
                ssl=bool(request.get("verify_tls", True)),
                json=request.get("json"),
                data=_body(request),
                headers=_headers(request, context),
                params=_params(request),
            ) as response:
                text = await response.text(errors="replace")
                output = {"status": response.status, "body": _decode(text, response)}
                _check_status(response, _expected(request), output)
                return output
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
        except ValueError:
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
