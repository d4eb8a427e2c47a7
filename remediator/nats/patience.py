"""Doing a piece of NATS work again while the cluster cannot answer yet.

Right after a server dies, a JetStream cluster elects new leaders for a few
seconds; requests meanwhile time out or are refused as temporarily
unavailable (TransportError). Start-up (streams, buckets, the consumer) and
the brake on the command line try again for a bounded time, saying so, and
give up with the last error after it. A ConfigError is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from remediator.errors import TransportError

T = TypeVar("T")
log = logging.getLogger(__name__)

_FIRST_PAUSE = 0.5  # seconds; doubles up to _MAX_PAUSE
_MAX_PAUSE = 4.0


async def patiently(
    work: Callable[[], Awaitable[T]],
    within: float,
    say: Callable[[TransportError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`work()`, again after each TransportError until `within` seconds have passed;
    `say(error, pause)` before each pause (default: a warning in the log)."""
    deadline = time.monotonic() + within
    pause = _FIRST_PAUSE
    while True:
        try:
            return await work()
        except TransportError as exc:
            if time.monotonic() + pause > deadline:
                raise
            (say or _log)(exc, pause)
        await sleep(pause)
        pause = min(_MAX_PAUSE, pause * 2)


def _log(exc: TransportError, pause: float) -> None:
    log.warning("NATS cannot answer yet (a leader election?): %s; trying again in %gs", exc, pause)
