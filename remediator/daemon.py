"""The composition root: wires settings, rules, actions, NATS and HTTP, and runs them.

It loads the rules, connects (starting the embedded nats-server when no URL
is given), prepares streams and the shared state, and hands delivered
messages to the `pipeline`. Beside it run the verification expiry, the
backlog gauges and the rule-file watcher. SIGTERM stops receiving and
drains; SIGHUP or a change to a rule file (`watch`) reloads the rules, and
an invalid set leaves the old one in force.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from remediator import chores
from remediator.actions.base import Action
from remediator.engine.engine import Engine
from remediator.engine.guards import Guards
from remediator.engine.limits import DEFAULT_MAX_PAYLOAD
from remediator.engine.ordering import OrderKey
from remediator.engine.resultlog import ResultLog
from remediator.errors import RemediatorError
from remediator.http.api import ControlAPI
from remediator.http.auth import Access, is_loopback, webhook_token
from remediator.http.consolefiles import mount_console
from remediator.http.guard import HostCheck
from remediator.http.listener import Listener
from remediator.http.results import ResultsAPI
from remediator.http.webhook import AlertmanagerBridge, compile_subject
from remediator.metrics import Metrics
from remediator.model import Result, Rule
from remediator.nats.connection import connect, connection_secrets
from remediator.nats.controlplane import ControlPlane
from remediator.nats.embedded import EmbeddedServer
from remediator.nats.patience import patiently
from remediator.nats.resultfeed import keep_fleet_results
from remediator.nats.transport import Transport
from remediator.parts import Wiring, build_actions, build_prometheus, prepare
from remediator.pipeline import Pipeline
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex
from remediator.rules.parsecache import ParseCache
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from remediator.rules.watch import RuleWatcher
from remediator.settings import Settings

log = logging.getLogger(__name__)

STARTUP_PATIENCE = 60.0  # seconds start-up keeps trying while JetStream cannot answer


@dataclass(slots=True)
class Ruleset:
    """The rules in force and the engine that serves them; swapped whole on reload."""

    rules: tuple[Rule, ...]
    engine: Engine

    @property
    def subjects(self) -> set[str]:
        return {s for rule in self.rules for s in rule.subjects}


class Daemon:
    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        secrets_dir = Path(settings.secrets_dir) if settings.secrets_dir else None
        self.secrets = Secrets(environ, secrets_dir)
        self.templates = Templates(self.secrets)
        self.parsed = ParseCache(Path(settings.data_dir) / "rules-cache")  # faster restarts
        self.webhook_subject = compile_subject(self.templates, settings.webhook_subject)
        self.order_key = OrderKey.compile(settings.order_key, self.templates)
        self.webhook_token = webhook_token(settings.webhook_token, self.secrets)
        self.ruleset: Ruleset | None = None
        self.transport: Transport | None = None
        self.actions: dict[str, Action] = {}
        self.guards: Guards | None = None
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[bool]] = set()
        self.pipeline: Pipeline | None = None
        self._reloading = asyncio.Lock()
        self._watcher: RuleWatcher | None = None
        self.results = ResultLog()  # what the console and /api/results read
        self.plane: ControlPlane | None = None
        self.access = Access.from_config(
            settings.section("api"), self.secrets, loopback=is_loopback(settings.http)
        )
        self.failure: str | None = None  # why the daemon can no longer work; exits 1
        self.prometheus = build_prometheus(settings, self.secrets, self.metrics)

    def ready(self) -> bool:
        t = self.transport
        if self.ruleset is None or t is None:
            return False
        # Stalled: writes have failed for long and none succeeded, so no event can finish;
        # `connected` also needs the server to answer pings: not a hung one.
        return t.receiving and t.connected and not t.acked.stalled()

    def _engine(self) -> Engine:
        assert self.ruleset is not None
        return self.ruleset.engine

    def _rules(self) -> tuple[Rule, ...]:
        return self.ruleset.rules if self.ruleset is not None else ()

    def load(self, rules: tuple[Rule, ...] | None = None) -> Ruleset:
        """Build the engine for `rules` (read from `--rules` when not given)."""
        if rules is None:
            rules = load_rules(self.settings.rules, self.templates, self.parsed)
        engine = Engine.build(
            RuleIndex(rules),
            self.actions,
            self.secrets,
            guards=self.guards,
            metrics=self.metrics,
            pauses=self.plane.pauses if self.plane else None,
            desk=self.plane.desk if self.plane else None,
            dry_run=self.settings.dry_run,
            report=self.transport.publish_result if self.transport is not None else None,
            max_payload=self.transport.max_payload if self.transport else DEFAULT_MAX_PAYLOAD,
        )
        self.metrics.know_rules(rule.name for rule in rules)
        return Ruleset(rules, engine)

    def _swap(self, ruleset: Ruleset) -> None:
        """Put `ruleset` in force, then say so: a watcher of the gauge must never see the
        new count while events are still matched against the old rules."""
        self.ruleset = ruleset
        self.metrics.rules_loaded.set(len(ruleset.rules))
        if self.plane is not None:
            self.plane.reloaded.set()  # `pause` checks names against what the fleet runs

    async def run(self) -> int:
        """Start everything, consume until asked to stop, drain, and exit 0."""
        self._watcher = RuleWatcher(self.settings.rules, self.reload)
        collecting = gc.isenabled()
        gc.disable()  # until the engine is built: see _settle_heap
        embedded = None
        check = HostCheck.build(self.settings, not self.access.tokens, self.webhook_token is None)
        listener = Listener(self.registry, self.ready, lambda: self.failure is None, check)
        try:
            rules = load_rules(self.settings.rules, self.templates, self.parsed)  # fail fast
            embedded = EmbeddedServer.claimed(self.settings)  # a second daemon here: refused
            await listener.check(*self.settings.http_host_port)
            url = await self._nats_url(embedded)
            self.secrets.known.update(connection_secrets(self.settings, url))
            controls = await self._start(url, rules, listener, collecting)
            self._install_signals()
            log.info(
                "remediator ready: %d rules, NATS %s, http %s", len(rules), url, self.settings.http
            )
            await self._serve()
            for task in controls:
                task.cancel()
            # Awaited: a watcher stops its subscription as it ends, before the drain.
            await asyncio.gather(*controls, return_exceptions=True)
        finally:
            _settle_heap(collecting, freeze=False)  # a start-up that failed half-way
            await listener.stop()
            await self._close(embedded)
        return 1 if self.failure else 0

    async def _nats_url(self, embedded: EmbeddedServer | None) -> str:
        """The configured NATS, or the embedded nats-server started for it."""
        if embedded is None:
            assert self.settings.nats_url is not None
            return self.settings.nats_url
        url = await embedded.start()
        log.info("no NATS URL given: using the embedded server at %s", url)
        return url

    async def _start(
        self, url: str, rules: tuple[Rule, ...], listener: Listener, collecting: bool
    ) -> list[asyncio.Task[None]]:
        """Connect, make the streams and buckets, build the engine and the pipeline, and
        open the listener; returns the control plane's background tasks."""
        self.transport = Transport(await connect(self.settings, url), self.settings)
        self.transport.on_result = self._record
        self.actions.update(
            build_actions(self.transport, self.settings, self.environ, self.prometheus)
        )
        self.guards, self.plane = await patiently(
            lambda: prepare(self.transport, self.settings, self.metrics, rules, self._parts()),
            STARTUP_PATIENCE,
        )
        self._swap(self.load(rules))
        _settle_heap(collecting, freeze=True)
        controls = await self.plane.start() if self.plane else []
        self.pipeline = Pipeline(
            self.transport, self.settings, self.metrics, self._engine, self.order_key
        )
        self._mount(listener)
        await listener.start(*self.settings.http_host_port)
        return controls

    def _mount(self, listener: Listener) -> None:
        """The webhook, the control and results API, and the console."""
        assert self.transport is not None and self.guards is not None
        assert self.pipeline is not None
        state = self.guards.store if not self.settings.core else None
        limits, mask = self.settings.max_actions, self.secrets.mask
        listener.add_api(ControlAPI(self.access, self.plane, self._rules, state, limits, mask))
        listener.add_webhook(
            AlertmanagerBridge(
                self.transport,
                self.webhook_subject,
                self.webhook_token,
            )
        )
        ResultsAPI(
            self.results, self._rule_names, self.access, self.transport.stored, self.secrets.mask
        ).mount(listener.app)
        mount_console(listener.app)

    async def _serve(self) -> None:
        assert self.transport is not None and self.ruleset is not None
        assert self.pipeline is not None
        pipeline = self.pipeline
        consume = asyncio.create_task(pipeline.consume(self.ruleset.subjects))
        ticker = asyncio.create_task(pipeline.tick_in_progress())
        background = [
            asyncio.create_task(chore)
            for chore in (
                *self._verifying(),
                chores.sweep_windows(self._engine),
                chores.track_backlog(self.transport, self.settings, self.metrics),
                self._seed_results(),
                *([self._watcher.run()] if self._watcher else []),
            )
        ]
        await self._until_stopped_or_dead(consume)
        log.info("stopping: no new messages; draining %d in flight", pipeline.in_flight)
        try:
            await self.transport.stop_receiving()
        except Exception as exc:  # the connection may be the thing that died
            log.warning("stop receiving: %s", exc)
        consume.cancel()
        for chore in background:
            chore.cancel()
        # Awaited, so a chore's own clean-up (a history reader's consumer) is done before
        # the connection drains: else the drain waits for it, up to its timeout.
        await asyncio.gather(*background, return_exceptions=True)
        await pipeline.drain()
        ticker.cancel()

    def _record(self, result: Result, data: bytes, msg_id: str) -> None:
        self.results.add(result.body(), len(data), published_as=msg_id)

    def _parts(self) -> Wiring:
        return Wiring(self._engine, self.prometheus, self._rule_names, self.secrets)

    def _rule_names(self) -> list[str]:
        return [rule.name for rule in self.ruleset.rules] if self.ruleset else []

    async def _seed_results(self) -> None:
        """Every replica's console shows the fleet's results: the last day, then all new."""
        if not self.settings.core and self.transport is not None:
            await keep_fleet_results(self.transport.nc, self.results, self._stopping)

    async def _until_stopped_or_dead(self, consume: asyncio.Task[None]) -> None:
        """Until SIGTERM, or until the daemon can no longer work: then `/healthz` fails
        and `run` returns 1, so a supervisor restarts it instead of it idling as healthy."""
        stopping = asyncio.create_task(self._stopping.wait())
        assert self.transport is not None
        watchdog = asyncio.create_task(chores.watch(self.transport, consume))
        await asyncio.wait([stopping, watchdog], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if watchdog.done():
            self.failure = watchdog.result()
            log.error("exiting: %s", self.failure)
        else:
            watchdog.cancel()

    def _verifying(self) -> list[Coroutine[object, object, None]]:
        if self.guards is None:
            return []
        return [chores.expire_verifications(self._engine)]

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
            gc.unfreeze()  # the rules being replaced may be collected once unused
            try:
                ruleset = self.load()
                if self.transport is not None:
                    await self.transport.prepare(ruleset.subjects)
            except RemediatorError as exc:
                self.metrics.rules_reloads.labels("error").inc()
                log.error("reload failed; the old rules stay in force:\n%s", exc)
                return False
            self._swap(ruleset)
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


def _settle_heap(collecting: bool, *, freeze: bool) -> None:
    """Start-up allocates the rules' millions of objects, all long-lived and without
    cycles to collect. The cycle collector is off meanwhile (it would walk the growing
    heap again and again: 0.35 s of building the index at 10,000 rules), and `freeze`
    then moves them out of its reach for good, so no later collection walks them either
    (full collections of that heap stalled events for tens of ms). A reload unfreezes:
    the rules it replaces must stay collectable."""
    if freeze:
        gc.freeze()
    if collecting:
        gc.enable()
