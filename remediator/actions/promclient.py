"""Asking Prometheus: the config section, one instant query, and what its answer means.

`prometheus: {url, token?, headers?, tls: {ca?, verify?}}` is read once at start-up
(`PromSettings.from_config`; a `token` of the form `secret(NAME)` is read like any
secret and masked like one). `PromClient.ask` sends one instant query
(`POST /api/v1/query`) and returns an `Answer`: every sample with its labels, for a
vector, a scalar, or (of a range selector) the latest value of each series. It is
shared by the `prometheus` step and by verification by query.

Failures map onto `StepError`: an unreachable server, a 5xx, 408 or 429 are
transient (the step's retry policy applies) and name the address; a query Prometheus
rejects (400, 422: `{"status": "error", "error": ...}`) is permanent and carries
Prometheus's own message. Queries are counted by result (`ok`, `empty`, `error`) and
timed; the labels never come from the query.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from remediator import __version__
from remediator.errors import ConfigError, StepError, TemplateError
from remediator.metrics import Metrics
from remediator.rules.secrets import Secrets, config_secret

_CONFIG_KEYS = ("url", "token", "headers", "tls")
_TRANSIENT_4XX = frozenset({408, 429})
_ERROR_CAP = 1000  # characters of Prometheus's message kept in the step's error


@dataclass(frozen=True, slots=True, kw_only=True)
class PromSettings:
    """Where Prometheus is and how to authenticate; a step's own `url` overrides `url`."""

    url: str | None = None
    token: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ca: str | None = None
    verify: bool = True

    @classmethod
    def from_config(cls, section: Mapping[str, object], secrets: Secrets) -> PromSettings:
        """The config file's `prometheus:` section; ConfigError names the bad key."""
        unknown = sorted(set(section) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"prometheus: unknown key(s) {', '.join(unknown)}")
        url, token = section.get("url"), section.get("token")
        if url is not None and not _http_url(url):
            raise ConfigError(f"prometheus.url: not an http:// or https:// URL: {url!r}")
        headers = section.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ConfigError("prometheus.headers: expected a mapping of name to value")
        tls = section.get("tls") or {}
        if not isinstance(tls, Mapping) or set(tls) - {"ca", "verify"}:
            raise ConfigError("prometheus.tls: expected {ca, verify}")
        try:
            token = None if token is None else config_secret(str(token), secrets)
            values = {
                str(k): config_secret(str(v), secrets, literal_is_secret=False)
                for k, v in headers.items()
            }
        except TemplateError as exc:
            raise ConfigError(f"prometheus: {exc}") from exc
        verify = tls.get("verify", True)
        if not isinstance(verify, bool):
            raise ConfigError(f"prometheus.tls.verify: expected true or false, got {verify!r}")
        ca = tls.get("ca")
        return cls(
            url=url if isinstance(url, str) else None,
            token=token,
            headers=values,
            ca=None if ca is None else str(ca),
            verify=verify,
        )

    def ssl(self) -> ssl.SSLContext | bool:
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=self.ca) if self.ca else True


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Answer:
    """An instant query's answer: every sample, in Prometheus's order."""

    query: str
    samples: tuple[Sample, ...]

    @property
    def value(self) -> float | None:
        """The first sample's value; None when the answer is empty."""
        return self.samples[0].value if self.samples else None

    def output(self) -> dict[str, object]:
        """The step's output: `value`, `values` ([{labels, value}]) and `query`."""
        values = [{"labels": dict(s.labels), "value": s.value} for s in self.samples]
        return {"value": self.value, "values": values, "query": self.query}


class PromClient:
    """Instant queries over one pooled session, opened at the first query."""

    def __init__(self, settings: PromSettings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def ask(self, query: str, url: str | None = None) -> Answer:
        """One instant query to `url` (else the configured server)."""
        started = time.perf_counter()
        result = "error"
        try:
            answer = await self._ask(query, url)
            result = "ok" if answer.samples else "empty"
            return answer
        finally:
            if self._metrics is not None:
                self._metrics.prometheus_queries.labels(result).inc()
                self._metrics.prometheus_duration.observe(time.perf_counter() - started)

    async def value(self, query: str) -> float | None:
        """The first sample's value (verification by query); None when empty."""
        return (await self.ask(query)).value

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _ask(self, query: str, url: str | None) -> Answer:
        base = url or self._settings.url
        if not base:
            raise StepError(
                "no Prometheus to ask: set `prometheus: {url}` in the config or the step's url",
                permanent=True,
            )
        if not _http_url(base):
            raise StepError(f"url: not an http:// or https:// URL: {base!r}", permanent=True)
        endpoint = base.rstrip("/") + "/api/v1/query"
        try:
            async with self._client().post(
                endpoint, data={"query": query}, headers=self._headers()
            ) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            raise StepError(
                f"Prometheus at {base} unreachable: {exc or type(exc).__name__}"
            ) from exc
        return _answer(query, base, status, raw)

    def _headers(self) -> dict[str, str]:
        headers = dict(self._settings.headers)
        if self._settings.token:
            headers["Authorization"] = f"Bearer {self._settings.token}"
        return headers

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a ClientSession must be created inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._settings.ssl()),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                headers={"Accept": "application/json", "User-Agent": f"remediator/{__version__}"},
            )
        return self._session


def _answer(query: str, base: str, status: int, raw: bytes) -> Answer:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, Mapping) or body.get("status") != "success":
        raise _refusal(base, status, body, raw)
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise StepError(f"Prometheus at {base}: an answer without data", permanent=True)
    return Answer(query, _samples(str(data.get("resultType")), data.get("result")))


def _refusal(base: str, status: int, body: object, raw: bytes) -> StepError:
    """Prometheus's own words for a failed query; permanent when the query is at fault."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        kind = body.get("errorType")
        why = f"{kind}: {body['error']}" if kind else str(body["error"])
    else:
        why = raw[:300].decode(errors="replace").strip() or "(no message)"
    permanent = 400 <= status < 500 and status not in _TRANSIENT_4XX
    return StepError(
        f"Prometheus at {base}: HTTP {status}: {why[:_ERROR_CAP]}",
        permanent=permanent,
        output={"status": status},
    )


def _samples(kind: str, result: object) -> tuple[Sample, ...]:
    """Vector: every sample. Scalar and string: one, unlabelled. Matrix: each series' last."""
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        return (Sample({}, _number(result[1])),)
    if not isinstance(result, list):
        return ()
    samples = []
    for series in result:
        if not isinstance(series, Mapping):
            continue
        labels = series.get("metric")
        point = series.get("value")
        points = series.get("values")
        if point is None and isinstance(points, list) and points:
            point = points[-1]
        if isinstance(point, list) and len(point) == 2:
            named = (
                {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}
            )
            samples.append(Sample(named, _number(point[1])))
    return tuple(samples)


def _number(value: object) -> float:
    try:
        return float(str(value))  # Prometheus sends "NaN", "+Inf" and numbers as strings
    except ValueError:
        message = f"Prometheus answered a value that is not a number: {value!r}"
        raise StepError(message, permanent=True) from None


def _http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))
