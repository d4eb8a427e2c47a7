"""The Alertmanager bridge: `POST /webhook/alertmanager` in, one NATS event per alert out.

Alertmanager (webhook version 4) posts a group of alerts. Each alert becomes
an event on the subject rendered from the `webhook_subject` template
(default `alerts.<alertname>`), carrying the alert's own fields plus the
group's `receiver`, `externalURL` and `groupKey`, with
`Nats-Msg-Id: <fingerprint>:<status>:<startsAt>`: Alertmanager re-sends a
group on every `repeat_interval` and retries failed posts, and JetStream
drops the repeats inside its duplicate window.

The answer tells Alertmanager whether to retry: 200 only once every event is
stored (JetStream-acknowledged when a stream captures the subject, else
flushed to the server), 503 while NATS is unreachable (it retries), and a
4xx for what no retry can fix: 400 for a malformed body (nested too deeply,
lone surrogates, not version 4), 401 without the configured bearer token, 408
for a body not sent within 10 s, 413 over 1 MiB or over the server's
max_payload, 415 without a JSON content type (a browser cannot post JSON
cross-site without a CORS preflight, which this listener never grants). The
whole body is checked before anything is published; ids are hashed past
`limits.MAX_ID` characters, so a huge fingerprint cannot overflow a header.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import jinja2
from aiohttp import web

from remediator.engine.events import trace_id as header_trace_id
from remediator.engine.limits import bounded_id
from remediator.errors import (
    ConfigError,
    EventError,
    TemplateError,
    TransportError,
    Unpublishable,
)
from remediator.model import Renderable
from remediator.rules.subjects import publish_problem
from remediator.rules.templating import Templates

log = logging.getLogger(__name__)

PATH = "/webhook/alertmanager"
MAX_BODY = 1024 * 1024
BODY_TIMEOUT = 10.0  # seconds a client may take to send its body (slow clients hold memory)
ALERT_FIELDS = (
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
)
GROUP_FIELDS = ("receiver", "externalURL", "groupKey")
STATUSES = ("firing", "resolved")


def compile_subject(templates: Templates, source: str) -> Renderable:
    """The `webhook_subject` template, compiled once at start-up; `alert` and `group` in scope."""
    try:
        return templates.compile(source, field="webhook_subject")
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"setting webhook_subject: {exc}") from exc


class Publisher(Protocol):
    """What the bridge needs of the transport."""

    @property
    def connected(self) -> bool: ...

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert, ready to publish."""

    alertname: str
    subject: str
    payload: dict[str, object]
    event_id: str
    trace_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": self.event_id, "trace-id": self.trace_id}


class AlertmanagerBridge:
    def __init__(
        self,
        publisher: Publisher,
        subject: Renderable,
        token: str | None,
        new_trace_id: Callable[[], str],
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.publisher = publisher
        self.subject = subject
        self.token = token.encode() if token else None
        self.new_trace_id = new_trace_id
        self.body_timeout = body_timeout

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        # Compared in constant time, so the answer's timing does not leak the token.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token
        )

    async def handle(self, request: web.Request) -> web.Response:
        if not self.authorized(request.headers.get("Authorization")):
            return _answer(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/json" and not request.content_type.endswith(
            "+json"
        ):  # a browser posts text/plain cross-site without a preflight: never accepted
            return _answer(415, f"content type {request.content_type!r}; need application/json")
        if (request.content_length or 0) > MAX_BODY:
            return _answer(413, f"body over {MAX_BODY} bytes")
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, f"body over {MAX_BODY} bytes")
        except TimeoutError:
            return _answer(408, f"body not received within {self.body_timeout:g}s")
        try:
            events = self.events(body, request.headers)
        except EventError as exc:
            log.warning("webhook: refused a malformed body: %s", exc)
            return _answer(400, str(exc))
        if not self.publisher.connected:
            return _answer(503, "NATS is unreachable; retry later")
        try:
            await self.publish(events)
        except Unpublishable as exc:  # over the server's max_payload: no retry can help
            log.warning("webhook: %s", exc)
            return _answer(413, str(exc))
        except TransportError as exc:
            log.warning("webhook: %s", exc)
            return _answer(503, f"NATS is unreachable; retry later ({exc})")
        return _answer(200, f"published {len(events)} alert(s)")

    def events(self, body: bytes, headers: Mapping[str, str]) -> list[AlertEvent]:
        """The events in a webhook body, or EventError naming what is wrong with it."""
        group, alerts = _group(body)
        shared = {k: group[k] for k in GROUP_FIELDS if k in group}
        trace = header_trace_id(headers, {})  # hashed past limits.MAX_ID characters
        return [
            self._event(index, alert, group, shared, trace) for index, alert in enumerate(alerts)
        ]

    async def publish(self, events: list[AlertEvent]) -> None:
        """Publish every event; raise TransportError if any was not stored."""
        outcomes = await asyncio.gather(
            *(self._publish(event) for event in events), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        await self.publisher.flush()  # core NATS publishes: the server has them

    async def _publish(self, event: AlertEvent) -> None:
        data = json.dumps(event.payload).encode()
        await self.publisher.publish(event.subject, data, event.headers)
        log.info(
            "webhook: alert %s %s published to %s",
            event.alertname,
            event.payload["status"],
            event.subject,
            extra={"trace_id": event.trace_id, "event_id": event.event_id},
        )

    def _event(
        self,
        index: int,
        alert: object,
        group: Mapping[str, object],
        shared: Mapping[str, object],
        trace: str | None,
    ) -> AlertEvent:
        where = f"alerts[{index}]"
        if not isinstance(alert, Mapping):
            raise _malformed(f"{where} is not an object")
        labels = alert.get("labels")
        if not isinstance(labels, Mapping):
            raise _malformed(f"{where}.labels is missing or not an object")
        name = labels.get("alertname")
        if not isinstance(name, str) or not name:
            raise _malformed(f"{where}.labels.alertname is missing")
        status = alert.get("status")
        if status not in STATUSES:
            raise _malformed(f"{where}.status must be firing or resolved, not {status!r}")
        starts = alert.get("startsAt")
        if not isinstance(starts, str) or not starts:
            raise _malformed(f"{where}.startsAt is missing")
        if not isinstance(alert.get("annotations", {}), Mapping):
            raise _malformed(f"{where}.annotations is not an object")
        if not _text(alert):
            raise _malformed(f"{where} holds a lone surrogate: not valid Unicode text")
        payload = {k: alert[k] for k in ALERT_FIELDS if k in alert}
        # Alertmanager before 0.20 sends no fingerprint: derive a stable one from the labels.
        fingerprint = str(alert.get("fingerprint") or _fingerprint(labels))
        payload["fingerprint"] = fingerprint
        payload.update(shared)
        subject = self._subject(where, alert, group)
        event_id = bounded_id(f"{fingerprint}:{status}:{starts}")
        return AlertEvent(name, subject, payload, event_id, trace or self.new_trace_id())

    def _subject(self, where: str, alert: Mapping[str, object], group: Mapping[str, object]) -> str:
        try:
            subject = str(self.subject.render({"alert": alert, "group": group}))
        except TemplateError as exc:
            raise _malformed(f"{where}: webhook subject: {exc}") from exc
        if (problem := publish_problem(subject)) is not None:
            shown = subject[:80] + ("..." if len(subject) > 80 else "")
            raise _malformed(
                f"{where}: {shown!r} is not a valid NATS subject to publish to: {problem}"
            )
        return subject


def _text(value: object) -> bool:
    """Whether every string in `value` is valid Unicode (JSON escapes can carry lone
    surrogates, which no subject, header or UTF-8 payload can)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _group(body: bytes) -> tuple[Mapping[str, object], list[object]]:
    try:
        group = json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except RecursionError as exc:
        raise _malformed("body is not JSON: nested too deeply") from exc
    except (ValueError, UnicodeError) as exc:
        raise _malformed(f"body is not JSON: {exc}") from exc
    if not isinstance(group, dict):
        raise _malformed("body is not a JSON object")
    if str(group.get("version")) != "4":
        raise _malformed(f"webhook version {group.get('version')!r} is not supported (need 4)")
    alerts = group.get("alerts")
    if not isinstance(alerts, list):
        raise _malformed("alerts is missing or not a list")
    return group, alerts


def _not_json(constant: str) -> object:
    """NaN and Infinity: Python reads them, strict JSON consumers of the event do not."""
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON, but no float, and published as Infinity
        raise ValueError(f"number {text[:40]} is too large")
    return value


def _fingerprint(labels: Mapping[str, object]) -> str:
    text = json.dumps(labels, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _malformed(message: str) -> EventError:
    return EventError("malformed_webhook", message)


def _answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status, headers=headers)
