"""A JetStream message's delivery facts, and whether its first delivery may be stale.

The facts come from the ack subject (stream, sequence, delivery count, the
time the stream stored it), read with one split; whether another replica may have
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
    stream, sequence, delivered, stored = _facts(msg)
    stale = may_be_stale(
        num_delivered=delivered,
        age=time.time() - stored if stored is not None else None,
        ack_wait=ack_wait,
        since_reconnect=reconnects.since_last(),
    )
    return Delivery(stream=stream, sequence=sequence, num_delivered=delivered, may_be_stale=stale)


def _facts(msg: Msg) -> tuple[str, int, int, float | None]:
    """(stream, stream sequence, delivery count, stored at in epoch seconds), read from the
    reply subject with one split: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
    <consumer seq>.<time ns>.<pending>`, or with `<domain>.<account hash>.` after `ACK.`
    and a token at the end. nats-py's `msg.metadata` builds four objects per message for
    the same (a tenth of an idle daemon's CPU); anything else falls back to it."""
    tokens = str(msg.reply).split(".")
    try:
        if len(tokens) == 9 and tokens[1] == "ACK":
            return tokens[2], int(tokens[5]), int(tokens[4]), int(tokens[7]) / 1e9
        if len(tokens) >= 11 and tokens[1] == "ACK":
            return tokens[4], int(tokens[7]), int(tokens[6]), int(tokens[9]) / 1e9
    except ValueError:
        pass
    meta = msg.metadata
    stored = meta.timestamp.timestamp() if meta.timestamp is not None else None
    return meta.stream, meta.sequence.stream, meta.num_delivered, stored
