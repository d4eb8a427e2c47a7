"""Decoding a NATS message into an `Event`: payload, event id and trace id.

The event id is what makes processing idempotent, so it prefers what the
publisher chose (`Nats-Msg-Id`), then the stream position, then a content
hash. The trace id follows the W3C `traceparent` header, a `trace-id` header
or a `trace_id` field, so one id runs from the alert through every action.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

from remediator.errors import EventError
from remediator.model import Delivery, Event


def decode_event(
    subject: str,
    headers: Mapping[str, str],
    data: bytes,
    delivery: Delivery | None,
    new_trace_id: Callable[[], str],
) -> Event:
    """The event in a message, or EventError for data that is not a JSON object."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError("invalid_json", f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise EventError("not_an_object", f"payload is a JSON {_json_type(payload)}, not an object")
    return Event(
        subject=subject,
        headers=headers,
        payload=payload,
        event_id=event_id(subject, headers, data, delivery),
        trace_id=trace_id(headers, payload) or new_trace_id(),
        delivery=delivery,
    )


def event_id(
    subject: str, headers: Mapping[str, str], data: bytes, delivery: Delivery | None
) -> str:
    if msg_id := headers.get("Nats-Msg-Id"):
        return msg_id
    if delivery is not None:
        return f"{delivery.stream}:{delivery.sequence}"
    digest = hashlib.blake2b(subject.encode() + b"\0" + data, digest_size=12)
    return digest.hexdigest()


def trace_id(headers: Mapping[str, str], payload: Mapping[str, object]) -> str | None:
    if parent := headers.get("traceparent"):
        parts = parent.split("-")
        if len(parts) >= 2 and parts[1]:
            return parts[1]
    if value := headers.get("trace-id"):
        return value
    field = payload.get("trace_id")
    return field if isinstance(field, str) and field else None


def _json_type(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
