"""A received message (`Inbound`, with the acks the daemon may send for it), taking a
batch of them, and the dead letter made of a message no daemon can handle (`Letter`).

An ack here is written to the client's buffer, not to the socket: the client's
flusher sends whatever is buffered when the event loop next runs it, so acks
sent for a whole batch without awaiting in between share one write.

A dead letter is always small enough to store: the data is cut (its `size` and
`sha256` say what it was), and so are the headers and the error. Dead letters
are published on `remediator.deadletter` with the Nats-Msg-Id
`deadletter:<event id>`, so JetStream keeps one whoever stores it and however
often: the daemon that gave up, or any replica told by the server's
max-deliveries advisory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from remediator.engine.limits import cap_text, fit_text
from remediator.model import Delivery

log = logging.getLogger(__name__)

DEAD_LETTER_SUBJECT = "remediator.deadletter"
DEAD_LETTER_DATA_CAP = 64 * 1024  # bytes of the original data kept in a dead letter
_HEADER_VALUE_CAP = 1024


@dataclass(slots=True)
class Inbound:
    """One received message and the acks the daemon may send for it."""

    subject: str
    headers: dict[str, str]
    data: bytes
    delivery: Delivery | None
    msg: Msg
    # Why the subject cannot be an event (bytes that are not UTF-8), else None; the
    # subject is then shown with its bad bytes escaped.
    subject_error: str | None = None

    async def ack(self) -> None:
        if self.delivery is not None:
            await self.msg.ack()

    async def nak(self, delay: float) -> None:
        if self.delivery is not None:
            await self.msg.nak(delay=delay)

    async def term(self) -> None:
        if self.delivery is not None:
            await self.msg.term()

    async def in_progress(self) -> None:
        if self.delivery is not None:
            await self.msg.in_progress()

    async def signal_progress(self) -> None:
        """`in_progress`, where a failure only costs an earlier redelivery."""
        try:
            await self.in_progress()
        except NatsError as exc:
            log.debug("in-progress signal failed: %s", exc)


def _capped_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """At most 64 headers, each key and value cut at 1 KiB, for a dead letter."""
    items = list(headers.items())[:64]
    return {cap_text(k, _HEADER_VALUE_CAP): cap_text(v, _HEADER_VALUE_CAP) for k, v in items}


@dataclass(frozen=True, slots=True)
class Letter:
    """What a dead letter tells of the message it stands for."""

    subject: str
    headers: Mapping[str, str]
    data: bytes
    delivery: Delivery | None

    def body(self, reason: str, error: str, event_id: str, max_payload: int) -> dict[str, object]:
        data = self.data
        body: dict[str, object] = {
            "reason": reason,
            "error": cap_text(error),
            "subject": self.subject,
            "headers": _capped_headers(self.headers),
            "event_id": event_id,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        cap = min(DEAD_LETTER_DATA_CAP, max_payload // 4)
        try:
            body["data"] = fit_text(data[: cap + 4].decode(), cap)
        except UnicodeDecodeError:
            body["data"] = base64.b64encode(data[: cap * 3 // 4]).decode()
            body["data_encoding"] = "base64"
        body["data_truncated"] = len(data) > cap or len(json.dumps(body["data"])) > cap
        if self.delivery is not None:
            d = self.delivery
            body["delivery"] = {
                "stream": d.stream,
                "sequence": d.sequence,
                "num_delivered": d.num_delivered,
            }
        return body


BATCH_MAX = 256  # messages taken at once: the loop still serves timers and acks between


def drain(queue: asyncio.Queue[Msg | None], first: Msg | None) -> tuple[list[Msg], bool]:
    """`first` and whatever else is queued now, up to BATCH_MAX; True when told to stop."""
    batch: list[Msg] = []
    msg = first
    while msg is not None:
        batch.append(msg)
        if len(batch) >= BATCH_MAX or queue.empty():
            return batch, False
        msg = queue.get_nowait()
    return batch, True
