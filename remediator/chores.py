"""The daemon's chores beside the consume loop: the watchdog that notices when it can no
longer work, the verification sweep, the absence-timer sweep and the backlog gauges.

Each is a loop over what the daemon hands it (callables where the daemon swaps its
parts on a reload), so the composition root only starts and stops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.errors import TransportError
from remediator.metrics import Metrics
from remediator.model import Rule
from remediator.nats.client import reader_dead
from remediator.nats.transport import Transport
from remediator.settings import Settings

log = logging.getLogger("remediator.daemon")  # the logger these lines always had

VERIFY_TICK = 1.0  # seconds between looks for expired verifications
ABSENT_TICK = 1.0  # seconds between sweeps for absence timers that ran out
CLEAN_EVERY = 60  # sweeps between removals of expired correlation windows
LIVENESS_TICK = 0.5  # seconds between looks at the consume loop and the NATS connection
BACKLOG_TICK = 5.0  # seconds between refreshes of the consumer backlog gauges


async def watch(transport: Transport, consume: asyncio.Task[None]) -> str:
    """Why the daemon can no longer work, once it cannot: the consume loop ended (it
    runs until stopped), the NATS connection is closed for good, or the client's
    read loop died while connected (deaf until a ping timeout, minutes later)."""
    while True:
        await asyncio.wait([consume], timeout=LIVENESS_TICK)
        if transport.nc.is_closed:  # the root cause when both happened
            return "the NATS connection is closed for good"
        if reader_dead(transport.nc):  # connected, but nothing will arrive
            return "the NATS client's read loop ended"
        if consume.done():
            error = None if consume.cancelled() else consume.exception()
            return f"the consume loop ended: {error!r}"


async def expire_verifications(guards: Guards, rules: Callable[[], tuple[Rule, ...]]) -> None:
    """Every replica looks; the store lets exactly one act on each record: ask its
    query when its turn came, escalate it when its deadline passed."""
    while True:
        await asyncio.sleep(VERIFY_TICK)
        try:
            await guards.sweep_verifications({rule.name: rule for rule in rules()})
        except TransportError as exc:
            log.warning("verification check failed: %s", exc)


async def sweep_windows(engine: Callable[[], Engine]) -> None:
    """Absence timers live in the store, not here: every replica sweeps, from the start
    (a timer that ran out while every daemon was down fires now), and the store lets
    one claim each due timer."""
    sweeps = 0
    while True:
        current = engine()
        try:
            await current.sweep()  # the engine reports (publishes) each result itself
            if sweeps % CLEAN_EVERY == 0:
                await current.clean_windows()
        except TransportError as exc:
            log.warning("absence sweep failed: %s", exc)
        except Exception:  # the sweep must outlive one bad timer
            log.exception("absence sweep failed")
        sweeps += 1
        await asyncio.sleep(ABSENT_TICK)


async def track_backlog(transport: Transport, settings: Settings, metrics: Metrics) -> None:
    """The consumer backlog gauges, from the server: at once, then every BACKLOG_TICK."""
    if settings.core:
        return
    labels = (settings.stream, settings.durable)
    while True:
        try:
            pending, ack_pending = await transport.pending()
            metrics.consumer_pending.labels(*labels).set(pending)
            metrics.consumer_ack_pending.labels(*labels).set(ack_pending)
        except TransportError as exc:
            log.debug("consumer info failed: %s", exc)
        await asyncio.sleep(BACKLOG_TICK)
