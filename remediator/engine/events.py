"""Decoding a NATS message into an `Event`: payload, event id and trace id.

The event id is what makes processing idempotent, so it prefers what the
publisher chose (`Nats-Msg-Id`), then the stream position, then a content
hash. The trace id follows the W3C `traceparent` header, a `trace-id` header
or a `trace_id` field, so one id runs from the alert through every action;
an event that carries none gets one derived from its event id, so a
redelivery (after a crash) keeps the trace id of the first delivery and the
logs of both stay correlated.
Both are hashed past `limits.MAX_ID` characters: they travel in headers, and
headers count toward the server's max_payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

import orjson

from remediator.engine.limits import bounded_id
from remediator.errors import EventError
from remediator.model import Delivery, Event


def _loads(data: bytes) -> object:
    """`json.loads`, the same value for every input, four times faster for most: orjson
    reads UTF-8 JSON within its limits; what it refuses (NaN literals, UTF-16, lone
    surrogates, nesting past 1,024) is read by `json` as before, which accepts or refuses
    it in its own words. So is a text with 20 digits in a row: orjson reads an integer
    past 64 bits as a float (the check is two byte-string operations, no regex)."""
    if _LONG_RUN not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # a digit: "0", else " "
_LONG_RUN = b"0" * 20


def decode_event(
    subject: str,
    headers: Mapping[str, str],
    data: bytes,
    delivery: Delivery | None,
    new_trace_id: Callable[[], str] | None = None,
) -> Event:
    """The event in a message, or EventError for data that is not a JSON object;
    `new_trace_id` replaces the derived trace id (the offline tools' fixed one)."""
    try:
        payload = _loads(data)
    except RecursionError as exc:  # nested deeper than the interpreter's stack allows
        raise EventError("invalid_json", "payload is not JSON: nested too deeply") from exc
    except (ValueError, UnicodeError) as exc:
        raise EventError("invalid_json", f"payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise EventError("not_an_object", f"payload is a JSON {_json_type(payload)}, not an object")
    identity = event_id(subject, headers, data, delivery)
    given = trace_id(headers, payload)
    if given is None:
        given = new_trace_id() if new_trace_id is not None else derived_trace_id(identity)
    return Event(
        subject=subject,
        headers=headers,
        payload=payload,
        event_id=identity,
        trace_id=given,
        delivery=delivery,
    )


def derived_trace_id(event_id: str) -> str:
    """A W3C-sized trace id (32 hex digits) that is the same for every delivery of one
    event: a random one would change with a redelivery and split the event's logs."""
    return hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


def event_id(
    subject: str, headers: Mapping[str, str], data: bytes, delivery: Delivery | None
) -> str:
    if msg_id := headers.get("Nats-Msg-Id"):
        return bounded_id(msg_id)
    if delivery is not None:
        return f"{delivery.stream}:{delivery.sequence}"
    digest = hashlib.blake2b(subject.encode() + b"\0" + data, digest_size=12)
    return digest.hexdigest()


def trace_id(headers: Mapping[str, str], payload: Mapping[str, object]) -> str | None:
    """The trace id the message carries, if any; hashed past `MAX_ID` characters."""
    found = _given_trace_id(headers, payload)
    return None if found is None else bounded_id(found)


def _given_trace_id(headers: Mapping[str, str], payload: Mapping[str, object]) -> str | None:
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
