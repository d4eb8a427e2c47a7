"""A JetStream message's delivery facts, and whether its first delivery may be stale.

The facts come from the ack subject's metadata (stream, sequence, delivery
count, the time the stream stored it); whether another replica may have
finished it already is `remediator.engine.staleness`'s pure decision, fed
the message's age and the time since this client last reconnected.
"""

from __future__ import annotations

import time

from nats.aio.client import Client
from nats.aio.msg import Msg

from remediator.engine.staleness import may_be_stale
from remediator.model import Delivery


class Reconnects:
    """When the client last reconnected, as far as the messages show."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._count = 0  # the client's reconnect count when last looked at
        self._at: float | None = None  # monotonic; None: never reconnected

    def since_last(self) -> float | None:
        """Seconds since the last reconnect (None: none yet). The count is read per
        message, so the clock starts at the first message after a reconnect: later than
        the reconnect itself, which only widens the window where messages are checked."""
        count = int(self.nc.stats.get("reconnects", 0))
        if count != self._count:
            self._count, self._at = count, time.monotonic()
        return None if self._at is None else time.monotonic() - self._at


def delivery_of(msg: Msg, ack_wait: float, reconnects: Reconnects) -> Delivery:
    meta = msg.metadata
    stored = meta.timestamp
    stale = may_be_stale(
        num_delivered=meta.num_delivered,
        age=time.time() - stored.timestamp() if stored is not None else None,
        ack_wait=ack_wait,
        since_reconnect=reconnects.since_last(),
    )
    return Delivery(
        stream=meta.stream,
        sequence=meta.sequence.stream,
        num_delivered=meta.num_delivered,
        may_be_stale=stale,
    )
