"""The composition root: wires settings, rules, actions, NATS and HTTP, and runs the loop.

The loop reads like the guarantee it keeps: receive a message, process it
in order with the others of its subject, publish one result per fired rule,
and only then ack. While steps run, one ticker tells the server every
in-flight message is still in progress, so a long script is not redelivered.
SIGTERM stops receiving and drains; SIGHUP or a change to a rule file
(`watch`) reloads the rules. Each event is handled in its own task, which
binds the event's ids for every log line written while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from remediator.actions.base import Action, ActionSet
from remediator.actions.http import HTTPAction
from remediator.actions.publish import PublishAction
from remediator.actions.scale import ScaleAction
from remediator.actions.ssh import SSHAction, SSHSettings
from remediator.embedded import EmbeddedServer
from remediator.engine import Engine, resolving
from remediator.errors import EventError, RemediatorError, TransportError
from remediator.events import decode_event, event_id, trace_id
from remediator.guards import Budget, Guards
from remediator.kube import KubeSettings
from remediator.loader import load_rules
from remediator.logs import bind_event
from remediator.matching import RuleIndex
from remediator.metrics import Metrics
from remediator.model import Event, Rule
from remediator.settings import Settings
from remediator.state import STATE_BUCKET, VERIFY_BUCKET, KVStore, MemoryStore, StateStore
from remediator.templating import Secrets, Templates
from remediator.transport import Inbound, Transport, connect, connection_secrets
from remediator.watch import RuleWatcher
from remediator.web import Listener
from remediator.webhook import AlertmanagerBridge, compile_subject

log = logging.getLogger(__name__)

VERIFY_TICK = 1.0  # seconds between looks for expired verifications
BACKLOG_TICK = 5.0  # seconds between refreshes of the consumer backlog gauges
STATE_TTL = 7 * 24 * 3600.0  # completion records and throttle state outlive any sane window


@dataclass(slots=True)
class Ruleset:
    """The rules in force and the engine that serves them; swapped whole on reload."""

    rules: tuple[Rule, ...]
    engine: Engine

    @property
    def subjects(self) -> set[str]:
        return {s for rule in self.rules for s in rule.subjects}


@dataclass(slots=True)
class Inflight:
    inbound: Inbound
    received: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        secrets_dir = Path(settings.secrets_dir) if settings.secrets_dir else None
        self.secrets = Secrets(environ, secrets_dir)
        self.templates = Templates(self.secrets)
        self.webhook_subject = compile_subject(self.templates, settings.webhook_subject)
        if settings.webhook_token:
            self.secrets.known.add(settings.webhook_token)
        self.ruleset: Ruleset | None = None
        self.transport: Transport | None = None
        self.actions: dict[str, Action] = {}
        self.guards: Guards | None = None
        self._stopping = asyncio.Event()
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[int, Inflight] = {}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._background: set[asyncio.Task[bool]] = set()
        self._received: dict[str, Counter] = {}  # events_received children, bound once
        self._ids = random.Random()
        self._reloading = asyncio.Lock()
        self._watcher: RuleWatcher | None = None

    def ready(self) -> bool:
        transport = self.transport
        return (
            self.ruleset is not None
            and transport is not None
            and transport.receiving
            and transport.nc.is_connected
        )

    def load(self, rules: tuple[Rule, ...] | None = None) -> Ruleset:
        """Build the engine for `rules` (read from `--rules` when not given)."""
        if rules is None:
            rules = load_rules(self.settings.rules, self.templates)
        engine = Engine.build(
            RuleIndex(rules),
            self.actions,
            self.secrets,
            guards=self.guards,
            metrics=self.metrics,
            dry_run=self.settings.dry_run,
        )
        self.metrics.rules_loaded.set(len(rules))
        self.metrics.know_rules(rule.name for rule in rules)
        return Ruleset(rules, engine)

    async def run(self) -> int:
        """Start everything, consume until asked to stop, drain, and exit 0."""
        self._watcher = RuleWatcher(self.settings.rules, self.reload)
        self.ruleset = self.load()
        embedded = None
        url = self.settings.nats_url
        if url is None:
            embedded = EmbeddedServer(
                Path(self.settings.data_dir), port=self.settings.embedded_port
            )
            url = await embedded.start()
            log.info("no NATS URL given: using the embedded server at %s", url)
        self.secrets.known.update(connection_secrets(self.settings, url))
        listener = Listener(self.registry, self.ready)
        try:
            self.transport = Transport(await connect(self.settings, url), self.settings)
            self.actions.update(build_actions(self.transport, self.settings, self.environ))
            await self.transport.prepare(self.ruleset.subjects)
            self.guards = await build_guards(self.transport, self.settings)
            self.ruleset = self.load(self.ruleset.rules)
            listener.add_webhook(
                AlertmanagerBridge(
                    self.transport,
                    self.webhook_subject,
                    self.settings.webhook_token,
                    self.new_trace_id,
                )
            )
            await listener.start(*self.settings.http_host_port)
            self._install_signals()
            log.info(
                "remediator ready: %d rules, NATS %s, http %s",
                len(self.ruleset.rules),
                url,
                self.settings.http,
            )
            await self._serve()
        finally:
            await listener.stop()
            await self._close(embedded)
        return 0

    async def _serve(self) -> None:
        assert self.transport is not None and self.ruleset is not None
        consume = asyncio.create_task(self._consume(self.ruleset.subjects))
        ticker = asyncio.create_task(self._tick_in_progress())
        verifier = asyncio.create_task(self._expire_verifications())
        backlog = asyncio.create_task(self._track_backlog())
        watcher = asyncio.create_task(self._watcher.run()) if self._watcher else None
        await self._stopping.wait()
        log.info("stopping: no new messages; draining %d in flight", len(self._inflight))
        await self.transport.stop_receiving()
        consume.cancel()
        verifier.cancel()
        backlog.cancel()
        if watcher is not None:
            watcher.cancel()
        await self._drain()
        ticker.cancel()

    async def _expire_verifications(self) -> None:
        """Every replica looks; the store lets exactly one act on each expired record."""
        while self.guards is not None and self.ruleset is not None:
            await asyncio.sleep(VERIFY_TICK)
            rules = {rule.name: rule for rule in self.ruleset.rules}
            try:
                for name in await self.guards.expire(rules):
                    self.metrics.verifications.labels(name, "not_resolved").inc()
            except TransportError as exc:
                log.warning("verification check failed: %s", exc)

    async def _track_backlog(self) -> None:
        """The consumer backlog gauges, from the server: at once, then every BACKLOG_TICK."""
        if self.settings.core or self.transport is None:
            return
        labels = (self.settings.stream, self.settings.durable)
        while True:
            try:
                pending, ack_pending = await self.transport.pending()
                self.metrics.consumer_pending.labels(*labels).set(pending)
                self.metrics.consumer_ack_pending.labels(*labels).set(ack_pending)
            except TransportError as exc:
                log.debug("consumer info failed: %s", exc)
            await asyncio.sleep(BACKLOG_TICK)

    async def _consume(self, subjects: set[str]) -> None:
        assert self.transport is not None
        async for inbound in self.transport.messages(subjects):
            if inbound.subject in self._tails:
                self._start(inbound, None)  # behind an earlier event of its subject
                continue
            matched = self._match(inbound)
            if matched is not None and not matched[1]:
                await self._ack_quiet(inbound, matched[0])
            else:
                self._start(inbound, matched)

    def _match(self, inbound: Inbound) -> tuple[Event, tuple[Rule, ...]] | None:
        """Decode and match right away; None for what needs the full path (poison, or a
        resolving event, which may close verifications)."""
        assert self.ruleset is not None
        try:
            event = self._decode(inbound)
        except EventError:
            return None
        if resolving(event):
            return None
        return event, self.ruleset.engine.fired(event)

    async def _ack_quiet(self, inbound: Inbound, event: Event) -> None:
        """The common case under load, an event that fires nothing: ack it here, with no
        task, no slot and no ordering queue (nothing of its subject is in flight)."""
        self._count_received(inbound.subject)
        if event.redelivered:
            self.metrics.redeliveries.inc()
        try:
            await inbound.ack()
        except Exception as exc:  # the server redelivers after ack_wait
            log.warning("ack failed for %s: %s", event.event_id, exc)
        self.metrics.event_duration.observe(0.0)

    def _decode(self, inbound: Inbound) -> Event:
        return decode_event(
            inbound.subject, inbound.headers, inbound.data, inbound.delivery, self.new_trace_id
        )

    def _count_received(self, subject: str) -> None:
        root = subject.split(".", 1)[0]
        child = self._received.get(root)
        if child is None:
            child = self._received[root] = self.metrics.events_received.labels(root)
        child.inc()

    def new_trace_id(self) -> str:
        """Trace ids need to be unique, not secret: no system call per event."""
        return f"{self._ids.getrandbits(128):032x}"

    def _start(self, inbound: Inbound, matched: tuple[Event, tuple[Rule, ...]] | None) -> None:
        """Queue the message behind the earlier ones of its subject (order within a subject)."""
        key = id(inbound)
        self._inflight[key] = Inflight(inbound)
        self.metrics.inflight.inc()
        previous = self._tails.get(inbound.subject)
        task = asyncio.create_task(self._handle(inbound, previous, matched))
        self._tails[inbound.subject] = task
        task.add_done_callback(lambda t: self._finished(key, inbound.subject, t))

    def _finished(self, key: int, subject: str, task: asyncio.Task[None]) -> None:
        entry = self._inflight.pop(key, None)
        self.metrics.inflight.dec()
        if entry is not None:
            self.metrics.event_duration.observe(time.monotonic() - entry.received)
        if self._tails.get(subject) is task:
            del self._tails[subject]

    async def _handle(
        self,
        inbound: Inbound,
        previous: asyncio.Task[None] | None,
        matched: tuple[Event, tuple[Rule, ...]] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        ruleset = self.ruleset  # in flight, an event keeps the rules it started with
        assert ruleset is not None
        async with self._slots:
            try:
                await self._process(inbound, ruleset.engine, matched)
            except Exception:
                log.exception("unexpected error on %s; will be redelivered", inbound.subject)
                await self._retry_later(inbound, "", "internal error")

    async def _process(
        self, inbound: Inbound, engine: Engine, matched: tuple[Event, tuple[Rule, ...]] | None
    ) -> None:
        self._count_received(inbound.subject)
        try:
            event, rules = matched if matched is not None else (self._decode(inbound), None)
        except EventError as exc:
            poison_id = event_id(inbound.subject, inbound.headers, inbound.data, inbound.delivery)
            bind_event(trace_id(inbound.headers, {}) or self.new_trace_id(), poison_id)
            await self._dead_letter(inbound, exc.reason, str(exc), poison_id)
            return
        bind_event(event.trace_id, event.event_id)
        if event.redelivered:
            self.metrics.redeliveries.inc()
        assert self.transport is not None
        try:
            # Guards and results both need NATS: if it is away, nothing is acked.
            for result in await engine.process(event, rules):
                await self.transport.publish_result(result)
            await inbound.ack()
        except TransportError as exc:
            log.warning(
                "event %s: NATS trouble, will retry: %s",
                event.event_id,
                exc,
                extra=_event_extra(event),
            )
            await self._retry_later(inbound, event.event_id, str(exc))

    async def _dead_letter(self, inbound: Inbound, reason: str, error: str, event_id: str) -> None:
        assert self.transport is not None
        log.warning("dead letter (%s) from %s: %s", reason, inbound.subject, error)
        try:
            await self.transport.dead_letter(inbound, reason, error, event_id)
            await inbound.term()
            self.metrics.dead_letters.labels(reason).inc()
        except TransportError as exc:
            log.warning("cannot publish dead letter: %s", exc)
            await self._nak(inbound)

    async def _retry_later(self, inbound: Inbound, event_id: str, error: str) -> None:
        """Infrastructure failure: nak with backoff, or dead-letter on the last delivery."""
        delivery = inbound.delivery
        if delivery is not None and delivery.num_delivered >= self.settings.max_deliver:
            await self._dead_letter(inbound, "infrastructure", error, event_id)
            return
        await self._nak(inbound)

    async def _nak(self, inbound: Inbound) -> None:
        attempts = inbound.delivery.num_delivered if inbound.delivery else 1
        try:
            await inbound.nak(delay=min(30.0, 2.0**attempts))
        except Exception as exc:  # the server redelivers after ack_wait anyway
            log.warning("nak failed: %s", exc)

    async def _tick_in_progress(self) -> None:
        """Keep long runs from redelivery: +WPI for every message older than a third of ack_wait."""
        interval = max(0.2, self.settings.ack_wait / 3)
        while True:
            await asyncio.sleep(interval)
            horizon = time.monotonic() - interval
            for entry in list(self._inflight.values()):
                if entry.received < horizon:
                    try:
                        await entry.inbound.in_progress()
                    except Exception as exc:
                        log.debug("in-progress signal failed: %s", exc)

    async def _drain(self) -> None:
        tasks = list(self._tails.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
        for task in pending:  # unfinished: not acked, so the server redelivers it
            task.cancel()
        if pending:
            log.warning("drain timeout: %d events left unacked for redelivery", len(pending))

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        # The loop keeps only weak references to tasks: hold it until it is done.
        task = asyncio.create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """Replace the rules if the new set validates; keep the old set otherwise.

        Reloads run one at a time; each marks the files it reads as seen, so the
        watcher does not reload again what a SIGHUP already did.
        """
        async with self._reloading:
            if self._watcher is not None:
                self._watcher.mark()
            try:
                ruleset = self.load()
                if self.transport is not None:
                    await self.transport.prepare(ruleset.subjects)
            except RemediatorError as exc:
                self.metrics.rules_reloads.labels("error").inc()
                if self.ruleset is not None:
                    self.metrics.rules_loaded.set(len(self.ruleset.rules))
                log.error("reload failed; the old rules stay in force:\n%s", exc)
                return False
            self.ruleset = ruleset
            self.metrics.rules_reloads.labels("ok").inc()
            log.info("reloaded %d rules", len(ruleset.rules))
            return True

    async def _close(self, embedded: EmbeddedServer | None) -> None:
        for action in self.actions.values():
            await action.close()
        if self.transport is not None:
            await self.transport.close()
        if embedded is not None:
            await embedded.stop()


def build_actions(
    transport: Transport, settings: Settings, environ: Mapping[str, str]
) -> ActionSet:
    """One instance per kind; integrations read their own config section."""
    kube = KubeSettings.from_config(settings.section("kubernetes"), environ)
    return {
        "http": HTTPAction(),
        "publish": PublishAction(transport),
        "scale": ScaleAction(kube),
        "ssh": SSHAction(SSHSettings.from_config(settings.section("ssh"))),
    }


async def build_guards(transport: Transport, settings: Settings) -> Guards:
    """Shared state in JetStream key-value buckets; in memory in core mode."""
    budget = Budget(*settings.max_actions) if settings.max_actions else None
    if settings.core:
        state: StateStore = MemoryStore()
        verifications: StateStore = MemoryStore()
    else:
        state = await KVStore.open(transport.js, STATE_BUCKET, ttl=STATE_TTL)
        verifications = await KVStore.open(transport.js, VERIFY_BUCKET, ttl=STATE_TTL)
    return Guards(store=state, verifications=verifications, publisher=transport, budget=budget)


def _event_extra(event: Event) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id}
