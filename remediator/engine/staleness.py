"""Which first deliveries may be stale: delivered before, held somewhere, and finished
by another replica meanwhile.

`num_delivered == 1` does not prove a message new to the fleet. A message can
sit in a frozen daemon's socket buffer, or a hung server's route buffer, past
`ack_wait`; the server then redelivers it to another replica, which finishes
it; when the first daemon resumes, the old copy arrives as a first delivery.
The same holds for what arrives just after a reconnect. Such a message must
have its completion looked up before any step runs, as a redelivery does.
Pure, so the transport computes it per message and the engine only reads a
flag.
"""

from __future__ import annotations

# A message's age comes from the server's clock, "now" from ours: half of `ack_wait`
# leaves room for clocks that disagree. A backlog read after an outage is older than
# that too and pays one look-up per event: a cost, never a repeat.
AGE_SHARE = 0.5


def may_be_stale(
    *, num_delivered: int, age: float | None, ack_wait: float, since_reconnect: float | None
) -> bool:
    """True when another replica may have finished this delivery already.

    `age`: seconds since the stream stored the message (None: unknown);
    `since_reconnect`: seconds since this client last reconnected (None: never).
    """
    if num_delivered > 1:
        return True
    if age is None or age > ack_wait * AGE_SHARE:
        return True
    return since_reconnect is not None and since_reconnect < ack_wait
