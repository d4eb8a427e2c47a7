"""Before any step runs: can the state store record its completion right now?

A step that runs while the store is away cannot be recorded as done, so its
event's redelivery would run it again. The engine therefore proves, before
an event's steps, that the store takes a write; if not, the event is retried
later with nothing run. A write, not a read: a replicated bucket's followers
can answer reads while no leader takes writes.

Concurrent events share one write, as long as it began after they asked
(so it says something about "now" for each of them): under load the check
costs one round trip per batch of events, not one per event.
"""

from __future__ import annotations

import asyncio

from remediator.engine.state import StateStore

PROBE_KEY = "reachable"


class StoreCheck:
    """One write to `PROBE_KEY` shared by the callers waiting when it starts."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._next: asyncio.Future[None] | None = None  # callers waiting for a write to begin
        self._writer: asyncio.Task[None] | None = None

    async def writable(self) -> None:
        """Return once a write that began after this call succeeded; raise its error if not."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_observe)
        waiter = self._next
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(waiter)

    async def _write(self) -> None:
        while (waiter := self._next) is not None:
            self._next = None  # whoever asks from now on waits for the next write
            try:
                await self._store.put(PROBE_KEY, b"1")
            except Exception as exc:
                waiter.set_exception(exc)
            else:
                waiter.set_result(None)


def _observe(future: asyncio.Future[None]) -> None:
    """Mark the outcome as seen: callers cancelled meanwhile must not leave it unretrieved."""
    if not future.cancelled():
        future.exception()
