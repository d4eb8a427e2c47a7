"""Storing what a fired rule did: its completion record and its result.

Both are sent together (one round trip, not two), and the message is acked
only once both are stored, so a redelivery that finds no record ran nothing
that was acked. Once steps ran,
storing never gives up: a TransportError would nak the message and its last
delivery dead-letter an event whose steps ran (an audit trail saying nothing
ran, and a replay running it again). It tries again until both are stored,
the message held in progress meanwhile by the pipeline's ticker, as a dead
letter is held. If the daemon stops first, the message is not acked and is
redelivered: at least once, as after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from remediator.errors import TransportError, Unpublishable
from remediator.model import Event, Result, Rule

if TYPE_CHECKING:
    from remediator.engine.engine import Engine

log = logging.getLogger(__name__)

HOLD_FIRST = 0.5  # seconds before storing a result whose steps ran is tried again; doubles
HOLD_MAX = 10.0


async def store(engine: Engine, rule: Rule, event: Event, result: Result, body: bytes) -> None:
    """Record and report `result` (`body`, its JSON); hold while NATS cannot take them."""
    pause = HOLD_FIRST
    while True:
        try:
            await _both(engine, rule, event, result, body)
            return
        except Unpublishable:
            raise  # no retry can store it (the pipeline dead-letters it, saying so)
        except TransportError as exc:
            if not ran(result):
                raise  # nothing ran: nak, and run it later
            log.warning(
                "rule %s ran for event %s but its result is not stored; holding the "
                "message, retry in %gs: %s",
                rule.name,
                event.event_id,
                pause,
                exc,
                extra={"trace_id": event.trace_id, "event_id": event.event_id, "rule": rule.name},
            )
        await engine.sleep(pause)
        pause = min(HOLD_MAX, pause * 2)


async def _both(engine: Engine, rule: Rule, event: Event, result: Result, body: bytes) -> None:
    if engine.guards is None or engine.report is None:  # one write (or none): just wait
        if engine.guards is not None:
            await engine.guards.record(rule, event, body)
        elif engine.report is not None:
            await engine.report(result, body)
        return
    # The record in a task of its own, the result here: both in flight at once, with one
    # task made instead of gather's two.
    record = asyncio.ensure_future(engine.guards.record(rule, event, body))
    try:
        await engine.report(result, body)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):  # stopping: the record goes with it
            record.cancel()
        await asyncio.wait([record])  # never left running, nor its failure unretrieved
        if not record.cancelled():
            record.exception()
        raise
    await record


def ran(result: Result) -> bool:
    """Some step of the result was run (or tried): its target may have been called."""
    return any(step.status in ("succeeded", "failed") for step in result.steps)
