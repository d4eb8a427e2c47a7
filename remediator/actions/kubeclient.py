"""The Kubernetes API client: JSON requests to the API server and what their failures mean.

This module owns talking to the API server once `remediator.kubeconfig` has said where it
is and how to authenticate (`KubeSettings`, re-exported here because `KubeClient` is built
from it). `KubeClient` resolves the endpoint at its first request, sends JSON over one
lazily opened aiohttp session and maps failures onto `StepError`: 4xx other than
408/409/429 is permanent, 409 is `Conflict` (read again and recompute), 408/429/5xx and
connection errors are transient, with `Retry-After` carried over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp

from remediator import __version__
from remediator.actions.kubeconfig import Endpoint, KubeSettings
from remediator.errors import StepError

__all__ = [
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "Conflict",
    "KubeAPI",
    "KubeClient",
    "KubeSettings",
]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"  # its body is a list of operations, not an object
Body = Mapping[str, object] | Sequence[object]
_TRANSIENT_4XX = frozenset({408, 429})
_CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class Conflict(StepError):
    """409 Conflict: the object changed since it was read; read it again and recompute."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


class KubeAPI(Protocol):
    """The requests an action makes; `KubeClient` is the real one."""

    async def get(self, path: str) -> dict[str, object]: ...

    async def put(self, path: str, body: Mapping[str, object]) -> dict[str, object]: ...

    async def post(self, path: str, body: Mapping[str, object]) -> dict[str, object]: ...

    async def patch(
        self, path: str, body: Body, content_type: str = MERGE_PATCH
    ) -> dict[str, object]: ...

    async def close(self) -> None: ...


class KubeClient:
    """JSON requests to one API server, over one session opened at the first request."""

    def __init__(self, settings: KubeSettings) -> None:
        self._settings = settings
        self._endpoint: Endpoint | None = None
        self._session: aiohttp.ClientSession | None = None

    async def get(self, path: str) -> dict[str, object]:
        return await self._request("GET", path)

    async def put(self, path: str, body: Mapping[str, object]) -> dict[str, object]:
        return await self._request("PUT", path, body, "application/json")

    async def post(self, path: str, body: Mapping[str, object]) -> dict[str, object]:
        return await self._request("POST", path, body, "application/json")

    async def patch(
        self, path: str, body: Body, content_type: str = MERGE_PATCH
    ) -> dict[str, object]:
        return await self._request("PATCH", path, body, content_type)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _connect(self) -> tuple[Endpoint, aiohttp.ClientSession]:
        if self._endpoint is None:
            self._endpoint = self._settings.resolve()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._endpoint.ssl_context or True),
                timeout=_CONNECT_TIMEOUT,
                headers={"Accept": "application/json", "User-Agent": f"remediator/{__version__}"},
            )
        return self._endpoint, self._session

    async def _request(
        self,
        method: str,
        path: str,
        body: Body | None = None,
        content_type: str = "application/json",
    ) -> dict[str, object]:
        endpoint, session = self._connect()
        headers = {"Content-Type": content_type} if body is not None else {}
        if (authorization := endpoint.credentials.authorization()) is not None:
            headers["Authorization"] = authorization
        data = json.dumps(body).encode() if body is not None else None
        try:
            async with session.request(
                method,
                endpoint.server + path,
                data=data,
                headers=headers,
                allow_redirects=False,
                server_hostname=endpoint.tls_server_name,
            ) as response:
                raw = await response.read()
                if response.status >= 300:
                    raise _api_error(method, path, response.status, raw, response.headers)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise StepError(
                f"Kubernetes API at {endpoint.server} ({endpoint.source}): TLS "
                f"certificate not trusted: {exc.certificate_error}",
                permanent=True,
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepError(
                f"Kubernetes API at {endpoint.server} ({endpoint.source}) "
                f"unreachable: {str(exc) or type(exc).__name__}"
            ) from exc
        return _json_object(method, path, raw)


def _api_error(
    method: str, path: str, status: int, raw: bytes, headers: Mapping[str, str]
) -> StepError:
    """The StepError for a non-2xx answer, carrying the API's `Status.message`."""
    message = f"Kubernetes {method} {path}: HTTP {status}: {_status_message(raw)}"
    if status == 409:
        return Conflict(message)
    transient = status >= 500 or status in _TRANSIENT_4XX
    return StepError(
        message,
        permanent=not transient,
        retry_after=_retry_after(headers.get("Retry-After")) if transient else None,
        output={"status": status},
    )


def _status_message(raw: bytes) -> str:
    try:
        status = json.loads(raw)
    except ValueError:
        status = None
    if isinstance(status, Mapping) and isinstance(status.get("message"), str):
        return str(status["message"])
    return raw[:300].decode(errors="replace").strip() or "(no message)"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; the API server sends seconds, never a date."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _json_object(method: str, path: str, raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise StepError(f"Kubernetes {method} {path}: the answer is not a JSON object")
    return body
