"""The results stream read back: the result events the daemon published, decoded.

`history` and `show` on the command line, and the daemon seeding its
`ResultLog` at start-up, read `REMEDIATOR_RESULTS` through `history.read` (an
ephemeral consumer, never the daemon's durable), only the `remediator.results.*`
subjects (dead letters and escalations share the stream). Bodies are returned
as stored, secrets already masked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from nats.aio.client import Client

from remediator.nats import history
from remediator.nats.jsconfig import RESULTS_STREAM

RESULTS_PREFIX = "remediator.results."


def results_filter(rule: str | None = None) -> str:
    """The subject filter for one rule's results, or for all of them."""
    return f"{RESULTS_PREFIX}{rule}" if rule else f"{RESULTS_PREFIX}>"


async def read_results(
    nc: Client, since: float | None, rule: str | None = None
) -> AsyncIterator[dict[str, object]]:
    """Result bodies stored since `since` (seconds since the epoch), oldest first."""
    span = history.Span(since=since, subject=results_filter(rule))
    async for stored in history.read(nc, RESULTS_STREAM, span):
        try:
            body = json.loads(stored.data)
        except ValueError:
            continue  # not ours to judge here; nothing else publishes on these subjects
        if isinstance(body, dict):
            yield body
