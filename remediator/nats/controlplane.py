"""The daemon's side of human control, built once: the bucket, its watcher, the approval
desk and worker, the heartbeat, and the pause clean-up.

The daemon starts `ControlPlane.open` after the transport, hands `pauses` and
`desk` to every engine it builds, and runs `tasks()` beside the consumer. In
`--core` mode there is no key-value store: no plane, so rules are never
paused and a rule with `approval` reports that it would ask, and never acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from remediator.engine.control import Pause, Pauses
from remediator.engine.engine import Engine
from remediator.errors import RemediatorError, TransportError
from remediator.metrics import Metrics
from remediator.nats.approvals import ApprovalWorker, NatsDesk
from remediator.nats.audit import AuditLog
from remediator.nats.control import (
    HEARTBEAT,
    Control,
    ControlWatcher,
    replica_id,
    rules_digest,
)
from remediator.nats.scheduled import Clock
from remediator.nats.transport import Transport
from remediator.nats.trigger import RunWorker
from remediator.rules.secrets import Secrets
from remediator.settings import Settings

log = logging.getLogger(__name__)

CLEAN_TICK = 5.0  # seconds between removals of pauses past their end
FORGET_EVERY = 720  # clean-up ticks between removals of day-old replicas (an hour)
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
    audit: AuditLog
    clock: Clock
    runs: RunWorker
    rule_names: Callable[[], list[str]] = list
    reloaded: asyncio.Event = field(default_factory=asyncio.Event)
    _published: tuple[str, ...] | None = None

    @classmethod
    async def open(
        cls,
        transport: Transport,
        settings: Settings,
        metrics: Metrics,
        engine: Callable[[], Engine],
        rule_names: Callable[[], list[str]] = list,
        secrets: Secrets | None = None,  # masked in every audit record
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
        audit = AuditLog(transport.js, settings.replicas)
        if secrets is not None:
            audit.mask = lambda text: str(secrets.mask(text))
        try:
            await audit.ready()
        except RemediatorError as exc:
            # Not fatal: the daemon still remediates; each human act is refused, saying why.
            log.warning("audit trail unavailable, human acts are refused until it is: %s", exc)
        clock = Clock(control.store, engine, identity)
        runs = RunWorker(control, transport, engine, identity)
        started = time.time()
        parts = (control, pauses, watcher, desk, worker, identity, started, audit, clock, runs)
        return cls(*parts, rule_names)

    def wrote(self, name: str, pause: Pause | None) -> None:
        """A pause (None: a resume) this replica has just stored: in its own view at once,
        so its next answer (`GET /api/rules` right after `POST /api/pause`) reflects the
        caller's write before the watch delivers it back."""
        self.pauses.apply(name, pause)
        self.watcher.refresh_paused()

    async def start(self) -> list[asyncio.Task[None]]:
        """Start following the bucket; return once the current pauses are known and this
        replica's rule names are published (so `pause` knows them once it is ready)."""
        await self._beat()
        tasks = [asyncio.create_task(c) for c in self._loops()]
        try:
            await asyncio.wait_for(self.watcher.ready.wait(), READY_WAIT)
        except TimeoutError:
            log.warning("control bucket not read within %ss; pauses apply once it is", READY_WAIT)
        return tasks

    def _loops(self) -> list[Coroutine[object, object, None]]:
        return [
            self.watcher.run(),
            self.worker.run(),
            self._heartbeat(),
            self._clean(),
            self.clock.run(),
            self.runs.run(),
        ]

    async def _heartbeat(self) -> None:
        while True:
            # A reload publishes the new names at once, not at the next beat.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reloaded.wait(), HEARTBEAT)
            self.reloaded.clear()
            await self._beat()

    async def _beat(self) -> None:
        """The heartbeat, naming the set of rules loaded, then that set when it changed
        since last written (in this order: the clean-up keeps only named sets)."""
        names = tuple(sorted(self.rule_names()))
        facts = {"started": self.started, "rules": rules_digest(names)}
        try:
            await self.control.heartbeat(self.identity, facts)
            if names != self._published:
                await self.control.publish_rules(names)
                self._published = names
        except TransportError as exc:
            log.debug("heartbeat failed: %s", exc)

    async def _clean(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(CLEAN_TICK)
            try:
                await self.watcher.clean_up()
                if ticks % FORGET_EVERY == 0:
                    await self.watcher.forget_replicas()
            except TransportError as exc:
                log.debug("control bucket clean-up failed: %s", exc)
            ticks += 1
