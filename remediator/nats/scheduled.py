"""The daemon's clock: fires the ticks of scheduled rules (SPEC §15).

Every replica looks once a second; `engine.schedule.Ticks` lets exactly one
claim each tick in the control bucket (which keeps its records without a
time-to-live), and the claimer runs the rule through the engine like any
firing: pause, throttle, budget and approval apply, and the result is stored
with `trigger: {by: schedule, at}`. A tick is claimed before it runs, so a
replica that dies mid-run does not run it twice (at most once per tick).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from remediator.engine.engine import Engine
from remediator.engine.schedule import Ticks, tick_event
from remediator.engine.state import StateStore
from remediator.errors import TransportError

log = logging.getLogger(__name__)

LOOK_EVERY = 1.0  # seconds between looks for a due tick (the store is read only when due)


class Clock:
    def __init__(
        self,
        store: StateStore,
        engine: Callable[[], Engine],
        identity: str,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.ticks = Ticks(store, identity)
        self.engine = engine
        self.now = now

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except TransportError as exc:
                log.warning("scheduled rules: cannot claim a tick now: %s", exc)
            except Exception:  # the clock must outlive one bad run
                log.exception("scheduled rules: a tick failed")
            await asyncio.sleep(LOOK_EVERY)

    async def once(self) -> int:
        """Fire what is due now; returns how many ticks this replica fired."""
        engine = self.engine()
        scheduled = [rule for rule in engine.index.rules if rule.schedule is not None]
        if not scheduled:
            return 0
        claimed = await self.ticks.due(scheduled, self.now())
        for rule, tick in claimed:
            log.info("rule %s: schedule tick %s", rule.name, tick, extra={"rule": rule.name})
            await engine.run_rule(rule, tick_event(rule.name, dt.datetime.fromisoformat(tick)))
        return len(claimed)
