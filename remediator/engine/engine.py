"""The engine: one event in, one `Result` per fired rule out.

Transport-free by design: it is handed the rule index, the action set, the
secrets (for masking) and a clock, and never imports NATS, HTTP or SSH. The
same engine serves the daemon, `remediator test`, `explain` and `replay`.
Matching is pure; a fired rule renders its vars, then runs its steps in
order, each under its timeout and retry policy (see `runner`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from remediator.actions.base import ActionSet, changes_things
from remediator.engine import asking, ladder, storing
from remediator.engine.control import ApprovalDesk, ApprovalRequest, PauseView
from remediator.engine.correlation import Firing, Windows, group_of
from remediator.engine.evaluations import Evaluations
from remediator.engine.guards import Guards
from remediator.engine.limits import DEFAULT_MAX_PAYLOAD, HEADER_ROOM
from remediator.engine.outcome import ResultBuilder
from remediator.engine.rulecontext import (
    LazyContext,
    render_vars,
    resolving,
    throttle_bucket,
    verify_key,
)
from remediator.engine.runner import StepRunner
from remediator.engine.slots import Slots, slotted
from remediator.engine.state import MemoryStore, StateStore
from remediator.errors import TemplateError
from remediator.metrics import Metrics
from remediator.model import Event, Result, Rule, StepResult
from remediator.rules.matching import RuleIndex
from remediator.rules.secrets import Secrets

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True, kw_only=True)
class Engine:
    index: RuleIndex
    runner: StepRunner
    secrets: Secrets
    guards: Guards | None = None
    metrics: Metrics | None = None
    pauses: PauseView | None = None
    desk: ApprovalDesk | None = None  # None: a rule with `approval` reports it would ask
    dry_run: bool = False
    # Replay's what-if: steps render instead of running, but throttles, the global budget
    # and verification treat the run as real (a rule's own `dry_run: true` still spends
    # nothing), so counts come out as the daemon's did.
    simulate: bool = False
    now: Callable[[], dt.datetime] = utcnow
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # between tries to store
    # Where correlation windows and absence timers live: the guards' store by default.
    state: StateStore | None = None
    windows: Windows = field(init=False, repr=False)
    slots: Slots | None = None  # concurrency per group; None: from the guards' store
    # Where a finished rule's result goes (the daemon: the results stream), written after
    # its completion record; None: the caller publishes what `process` returns.
    report: Callable[[Result, bytes], Awaitable[None]] | None = None
    # JSON bytes a result may take: the server's max_payload less room for headers.
    max_result_bytes: int = DEFAULT_MAX_PAYLOAD - HEADER_ROOM
    results: ResultBuilder = field(init=False, repr=False)  # finishes every Result
    _evaluations: Evaluations | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        store = self.state or (self.guards.store if self.guards is not None else None)
        self.windows = Windows(store if store is not None else MemoryStore())
        if self.slots is None and self.guards is not None:
            self.slots = Slots.beside(self.guards, self.metrics)
        self.results = ResultBuilder(
            secrets=self.secrets,
            clock=lambda: self.now(),  # the engine's clock, even when replaced later
            metrics=self.metrics,
            max_bytes=self.max_result_bytes,
        )

    @classmethod
    def build(
        cls,
        index: RuleIndex,
        actions: ActionSet,
        secrets: Secrets,
        *,
        guards: Guards | None = None,
        metrics: Metrics | None = None,
        pauses: PauseView | None = None,
        desk: ApprovalDesk | None = None,
        dry_run: bool = False,
        report: Callable[[Result, bytes], Awaitable[None]] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> Engine:
        runner = StepRunner(actions=actions, secrets=secrets, metrics=metrics)
        return cls(
            index=index,
            runner=runner,
            secrets=secrets,
            guards=guards,
            metrics=metrics,
            pauses=pauses,
            desk=desk,
            dry_run=dry_run,
            report=report,
            max_result_bytes=max_payload - HEADER_ROOM,
        )

    def fired(self, event: Event) -> tuple[Rule, ...]:
        """The rules this event fires, highest priority first (pure)."""
        if not self.index.candidates(event.subject):
            return ()  # the common case under load: no rule listens here; build nothing
        context = LazyContext(lambda: self.context(event))  # built only for a `when`
        matches = self.index.match(event.subject, event.payload, context)
        if self.metrics is not None:
            self._evaluations = self._evaluations or Evaluations(self.metrics)
            self._evaluations.count(matches)
        for rule, verdict in matches.errors:
            if verdict.error:
                log.warning(
                    "rule %s: when failed for event %s: %s",
                    rule.name,
                    event.event_id,
                    verdict.error,
                    extra=_log_extra(event, rule),
                )
        if resolving(event):
            # A resolving event closes verifications; it fires only rules that ask for it.
            return tuple(r for r in matches.fired if _asks_for_resolved(r))
        return matches.fired

    async def process(self, event: Event, rules: tuple[Rule, ...] | None = None) -> list[Result]:
        """Fire every matching rule (`rules`, when the caller matched already), each
        independently and concurrently."""
        if self.guards is not None and resolving(event):
            await self._close_verifications(event)
        if rules is None:
            rules = self.fired(event)
        if not rules:
            return []
        if self.guards is not None and not self.simulate and self._probe(rules):
            # Nothing runs that could not be recorded as done (TransportError: retry later).
            await self.guards.writable()
        if any(rule.windowed for rule in rules):  # only these pay for shared state
            return await self._process_windowed(event, rules)
        if len(rules) == 1:
            return [await self.run_rule(rules[0], event)]
        return list(await asyncio.gather(*(self.run_rule(rule, event) for rule in rules)))

    def _probe(self, rules: tuple[Rule, ...]) -> bool:
        """Must the store prove it takes writes before the steps run? Not when the one rule
        writes to it first anyway (its throttle reservation or the budget it spends: the
        write that fails there runs nothing), nor when it runs no step for real."""
        if len(rules) != 1 or rules[0].windowed or rules[0].approval is not None:
            return True
        rule = rules[0]
        if self.dry_run or rule.dry_run:
            return False
        return rule.throttle is None and (self.guards is None or self.guards.budget is None)

    async def _process_windowed(self, event: Event, rules: tuple[Rule, ...]) -> list[Result]:
        """Plain rules fire; windowed ones count the event and fire when their pattern holds."""
        runs = [self.run_rule(rule, event) for rule in rules if not rule.windowed]
        failed: list[Result] = []
        for rule in (r for r in rules if r.windowed):
            try:
                group = group_of(rule, self.context(event))
            except TemplateError as exc:
                failed.append(
                    self.results.finish(
                        rule, event, self.now(), "failed", (), self.results.mask(exc)
                    )
                )
                continue
            firing = await self.windows.observe(rule, event, group, self.now().timestamp())
            if firing is not None:
                runs.append(self.run_rule(rule, firing.event, firing.extra))
        return failed + list(await asyncio.gather(*runs))

    async def sweep(self) -> list[Result]:
        """Fire every absence timer that ran out (claimed by this replica only)."""
        rules = {rule.name: rule for rule in self.index.rules if rule.absent is not None}
        if not rules:
            return []
        results = []
        for firing in await self.windows.due(rules, self.now().timestamp()):
            results.append(await self.fire(firing))
        return results

    async def check_verifications(self) -> list[Result]:
        """Ask the verification queries whose turn came, escalate what ran out, and climb
        the ladders of those that failed (`verify.escalate_rule`): their results."""
        assert self.guards is not None
        rules = {rule.name: rule for rule in self.index.rules}
        return await ladder.climb(self, await self.guards.sweep_verifications(rules))

    async def clean_windows(self) -> int:
        """Remove correlation groups whose window has passed (the per-group bound)."""
        rules = {rule.name: rule for rule in self.index.rules if rule.correlate is not None}
        return await self.windows.clean(rules, self.now().timestamp()) if rules else 0

    async def fire(self, firing: Firing) -> Result:
        """Run a claimed absence through the normal path, then drop its timer."""
        result = await self.run_rule(firing.rule, firing.event, firing.extra)
        await self.windows.cleared(firing)
        return result

    def context(self, event: Event) -> dict[str, object]:
        return {
            "event": event.payload,
            "subject": event.subject,
            "headers": event.headers,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "now": self.now(),
        }

    async def run_rule(
        self, rule: Rule, event: Event, extra: Mapping[str, object] | None = None
    ) -> Result:
        """Fire `rule` for `event`; `extra` adds to the template context (`correlated`)."""
        guards = self.guards
        # Only a redelivery, or a first delivery that may be stale (old, or after a
        # reconnect), can have completed before: a fresh one saves the look-up (a round
        # trip to the state bucket on every event otherwise).
        if (
            guards is not None
            and event.may_have_completed
            and (stored := await guards.completed(rule, event)) is not None
        ):
            # Redelivered after it finished: report the same result again, run nothing.
            if self.metrics is not None:
                self.metrics.rule_results.labels(rule.name, "deduplicated").inc()
            result = Result.from_json(stored)
            if self.report is not None:
                await self.report(result, result.encode())
            return result
        result = await self._guarded_run(rule, event, extra or {})
        await storing.store(self, rule, event, result, result.encode())
        return result

    async def _guarded_run(self, rule: Rule, event: Event, extra: Mapping[str, object]) -> Result:
        started = self.now()
        if rule.windows is not None and not rule.windows.open_at(started):  # spends nothing
            why = rule.windows.describe(started)
            return self.results.finish(rule, event, started, "outside_window", (), why)
        context = self.context(event) | dict(extra) | {"rule": rule.name, "results": {}}
        # A real run spends budget and awaits verification; a dry run of any kind does not.
        acts = not (self.dry_run or rule.dry_run or event.dry_run)
        dry_run = self.simulate or not acts
        try:
            context["vars"] = render_vars(rule, context)
            bucket = throttle_bucket(rule, context)
        except TemplateError as exc:
            return self.results.finish(
                rule, event, started, "failed", (), reason=self.results.mask(exc)
            )
        # Before the guards: a paused rule spends no throttle and no budget.
        pause = None if self.pauses is None else self.pauses.paused(rule.name, bucket)
        if pause is not None:
            return self.results.finish(rule, event, started, "paused", (), pause.describe())
        if self.guards is None or event.forced:  # --force skips throttle and budget, never a pause
            return await self._act(rule, event, context, started, dry_run)
        admitted = functools.partial(self._admitted, rule, event, context, bucket, started, acts)
        if rule.concurrency is None or dry_run or self.slots is None:
            return await admitted()
        refuse = functools.partial(self.results.finish, rule, event, started, "throttled", ())
        try:  # waits for a slot of its group before the throttle and budget are asked
            return await slotted(self.slots, rule, context, admitted, refuse)
        except TemplateError as exc:
            return self.results.finish(rule, event, started, "failed", (), self.results.mask(exc))

    async def _admitted(
        self,
        rule: Rule,
        event: Event,
        context: dict[str, object],
        bucket: str,
        started: dt.datetime,
        acts: bool,
    ) -> Result:
        """The guards' part of a run: throttle and budget, the steps, the verification."""
        assert self.guards is not None
        dry_run = self.simulate or not acts
        admission = await self.guards.admit(rule, event, bucket, spend=acts)
        if admission.status != "run":
            return self.results.finish(rule, event, started, admission.status, (), admission.reason)
        try:
            result = await self._act(rule, event, context, started, dry_run)
        finally:
            await self.guards.release(admission)
        if rule.verify is not None and acts and result.status in ("succeeded", "dry_run"):
            await self.guards.expect(rule, event, verify_key(rule, context), bucket, context)
        return result

    async def _act(
        self,
        rule: Rule,
        event: Event,
        context: dict[str, object],
        started: dt.datetime,
        dry_run: bool,
    ) -> Result:
        if rule.approval is None:
            return await self._run_steps(rule, event, context, started, dry_run)
        rendered, ok = await self.runner.run_steps(rule, dict(context), dry_run=True)
        if not ok:  # a yes to steps certain to fail would waste the human's time
            return await asking.unrenderable(self, rule, event, context, started, rendered)
        if self.desk is None or dry_run:
            why = "approval required: would ask before acting (nothing runs)"
            return self.results.finish(rule, event, started, "awaiting_approval", rendered, why)
        return await asking.ask(self, rule, event, context, started, rendered)

    async def run_approved(self, rule: Rule, request: ApprovalRequest) -> Result:
        """Run the steps of an approved request, rendered from the event it stored."""
        return await asking.run_approved(self, rule, request)

    async def _run_steps(
        self,
        rule: Rule,
        event: Event,
        context: dict[str, object],
        started: dt.datetime,
        dry_run: bool,
    ) -> Result:
        steps, ok = await self.runner.run_steps(rule, context, dry_run=dry_run)
        status = "dry_run" if dry_run else "succeeded" if ok else "failed"
        if status == "succeeded" and self.nothing_done(steps):
            status = "skipped"  # every acting step's `when` said no: nothing was needed
        return self.results.finish(rule, event, started, status, steps)

    def nothing_done(self, steps: tuple[StepResult, ...]) -> bool:
        """Every step that would act was skipped (queries do not count: they only ask)."""
        acting = [s for s in steps if changes_things(self.runner.actions.get(s.kind))]
        return bool(acting) and all(s.status == "skipped" for s in acting)

    async def _close_verifications(self, event: Event) -> None:
        assert self.guards is not None
        for rule in self.index.candidates(event.subject):
            if rule.verify is None or rule.verify.query is not None:
                continue  # a query verification ends when the query says so
            context = self.context(event) | {"rule": rule.name}
            try:
                context["vars"] = render_vars(rule, context)
                key = verify_key(rule, context)
            except TemplateError as exc:
                log.warning(
                    "rule %s: verify key: %s",
                    rule.name,
                    self.results.mask(exc),
                    extra=_log_extra(event, rule),
                )
                continue
            if await self.guards.resolve(rule, event, key) and self.metrics is not None:
                self.metrics.verifications.labels(rule.name, "resolved").inc()


def _asks_for_resolved(rule: Rule) -> bool:
    return any(c.path == ("status",) for c in rule.conditions)


def _log_extra(event: Event, rule: Rule) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id, "rule": rule.name}
