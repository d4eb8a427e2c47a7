"""The daemon's side of human control, built once: the bucket, its watcher, the approval
desk and worker, the heartbeat, and the pause clean-up.

The daemon starts `ControlPlane.open` after the transport, hands `pauses` and
`desk` to every engine it builds, and runs `tasks()` beside the consumer. In
`--core` mode there is no key-value store: no plane, so rules are never
paused and a rule with `approval` reports that it would ask, and never acts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from remediator.engine.control import Pauses
from remediator.engine.engine import Engine
from remediator.errors import TransportError
from remediator.metrics import Metrics
from remediator.nats.approvals import ApprovalWorker, NatsDesk
from remediator.nats.control import HEARTBEAT, Control, ControlWatcher, replica_id
from remediator.nats.transport import Transport
from remediator.settings import Settings

log = logging.getLogger(__name__)

CLEAN_TICK = 5.0  # seconds between removals of pauses past their end
READY_WAIT = 5.0  # start-up waits this long for the first full view of the bucket


@dataclass(slots=True)
class ControlPlane:
    control: Control
    pauses: Pauses
    watcher: ControlWatcher
    desk: NatsDesk
    worker: ApprovalWorker
    identity: str
    started: float

    @classmethod
    async def open(
        cls,
        transport: Transport,
        settings: Settings,
        metrics: Metrics,
        engine: Callable[[], Engine],
    ) -> ControlPlane:
        control = await Control.open(transport.js, settings.replicas)
        pauses = Pauses(clock=control.clock)
        watcher = ControlWatcher(control, pauses, metrics)
        identity = replica_id()
        worker = ApprovalWorker(
            control,
            transport,
            engine,
            lambda: watcher.requests.values(),
            identity,
            pauses=pauses,
            metrics=metrics,
        )
        watcher.on_request = worker.wake.set
        desk = NatsDesk(
            control, transport, settings.public_url or f"http://{settings.http}", metrics
        )
        return cls(control, pauses, watcher, desk, worker, identity, time.time())

    async def start(self) -> list[asyncio.Task[None]]:
        """Start following the bucket; return once the current pauses are known."""
        tasks = [asyncio.create_task(c) for c in self._loops()]
        try:
            await asyncio.wait_for(self.watcher.ready.wait(), READY_WAIT)
        except TimeoutError:
            log.warning("control bucket not read within %ss; pauses apply once it is", READY_WAIT)
        return tasks

    def _loops(self) -> list[Coroutine[object, object, None]]:
        return [self.watcher.run(), self.worker.run(), self._heartbeat(), self._clean()]

    async def _heartbeat(self) -> None:
        facts: dict[str, object] = {"started": self.started}
        while True:
            try:
                await self.control.heartbeat(self.identity, facts)
            except TransportError as exc:
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT)

    async def _clean(self) -> None:
        while True:
            await asyncio.sleep(CLEAN_TICK)
            try:
                await self.watcher.clean_up()
            except TransportError as exc:
                log.debug("pause clean-up failed: %s", exc)
