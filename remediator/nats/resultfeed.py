"""The fleet's results, kept by every replica: so each one's console shows them all.

Each replica publishes only the results of the events it handled, but the console,
`/api/results` and `/api/overview` must be the same whichever replica serves them
(SPEC §18). So every daemon follows `remediator.results.>` of `REMEDIATOR_RESULTS`
with an ordered push consumer of its own (in server memory, never acked, recreated
by the client from the next stream sequence should it stall or the server lose it)
and feeds its `ResultLog` with what any replica published.

The follower starts delivering new messages *before* the last day is read back
(`seed`), so no result falls in the gap between the two; one seen by both, or a
result this daemon recorded as it published it, is counted once (`ResultLog.add`
and `seed` both skip a kept `(event_id, rule, status)`).

How far back the view reaches is the `ResultLog`'s bound: the newest 10,000 results
(at most 64 MiB of them) whole, and per-minute counts for 24 hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy

from remediator.engine.resultlog import DAY_MINUTES, MINUTE, ResultLog
from remediator.errors import TransportError
from remediator.nats.jsconfig import RESULTS_STREAM
from remediator.nats.results import read_results, results_filter

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # seconds; two missed and the client recreates the consumer


async def follow(nc: Client, results: ResultLog) -> Callable[[], Awaitable[None]]:
    """Start feeding `results` with every result published from now on, by any
    replica; returns the call that stops it."""

    async def received(msg: Msg) -> None:
        if results.published_here((msg.headers or {}).get("Nats-Msg-Id")):
            return  # added as it was published
        try:
            body = json.loads(msg.data)
        except ValueError:
            return  # nothing else publishes here; not ours to judge
        if isinstance(body, dict):
            results.add(body, len(msg.data))

    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.NEW,
        description="remediator console: the fleet's results (read-only)",
    )
    try:
        subscription = await nc.jetstream().subscribe(
            results_filter(),
            stream=RESULTS_STREAM,
            cb=received,
            config=config,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT,
        )
    except (NatsError, OSError) as exc:
        raise TransportError(f"cannot follow stream {RESULTS_STREAM}: {exc}") from exc

    async def stop() -> None:
        with contextlib.suppress(NatsError):  # the consumer lives in memory; it expires
            await subscription.unsubscribe()

    return stop


async def keep_fleet_results(nc: Client, results: ResultLog, stopping: asyncio.Event) -> None:
    """Follow the results stream, read back its last day, and keep following until
    cancelled. Trouble is logged, not raised: the console is not worth a daemon."""
    stop: Callable[[], Awaitable[None]] | None = None
    try:
        stop = await follow(nc, results)
        since = results.clock() - DAY_MINUTES * MINUTE
        count = await results.seed(read_results(nc, since))
        log.info("console: %d results of the last 24h read back; following the fleet's", count)
        await stopping.wait()
    except TransportError as exc:
        if not stopping.is_set():  # else: stopped while reading, nothing to say
            log.warning("cannot read the fleet's results for the console: %s", exc)
        await stopping.wait()
    finally:
        if stop is not None:
            await stop()
