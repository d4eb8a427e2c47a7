"""The `publish` action: a follow-up event onto NATS.

The action knows nothing of NATS; the transport hands it a `Publisher` that
goes through JetStream (acknowledged) when a stream captures the subject.
The step's idempotency key becomes `Nats-Msg-Id`, so a retried publish is
stored once. `json` is strict: a value JSON cannot carry (NaN, Infinity, from an
event's `1e999`) fails the step instead of emitting text strict consumers reject.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from remediator.actions.base import StepContext, optional, required
from remediator.errors import StepError, TransportError


class Publisher(Protocol):
    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        """Publish; return where it was stored (`stream`, `seq`) or `{}` for core NATS."""
        ...


class PublishAction:
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        subject = required(request, "subject", str)
        headers = {"Nats-Msg-Id": context.idempotency_key, "trace-id": context.trace_id}
        given = optional(request, "headers", Mapping) or {}
        headers.update({str(k): str(v) for k, v in given.items()})
        try:
            stored = await self._publisher.publish(subject, _data(request), headers)
        except TransportError as exc:
            raise StepError(f"publish to {subject}: {exc}") from exc
        return {"subject": subject, **stored}

    async def close(self) -> None:
        return None


def _data(request: Mapping[str, object]) -> bytes:
    if "json" in request:
        try:  # strict: NaN and Infinity are not JSON, and strict consumers reject them
            return json.dumps(request["json"], default=str, allow_nan=False).encode()
        except ValueError as exc:
            raise StepError(
                f"json: not standard JSON ({exc}); convert the value, e.g. with | string",
                permanent=True,
            ) from exc
    if "data" in request:
        return str(request["data"]).encode()
    raise StepError("one of json or data is required", permanent=True)
