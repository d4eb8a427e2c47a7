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
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.actions.base import ActionSet
from remediator.engine.guards import Guards
from remediator.engine.limits import DEFAULT_MAX_PAYLOAD, HEADER_ROOM, dumps, fit_result
from remediator.engine.runner import StepRunner
from remediator.errors import TemplateError
from remediator.metrics import Metrics
from remediator.model import Event, Result, Rule, StepResult
from remediator.rules.matching import Matches, RuleIndex
from remediator.rules.templating import Secrets

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
    dry_run: bool = False
    # Replay's what-if: steps render instead of running, but throttles, the global budget
    # and verification treat the run as real (a rule's own `dry_run: true` still spends
    # nothing), so counts come out as the daemon's did.
    simulate: bool = False
    now: Callable[[], dt.datetime] = utcnow
    # JSON bytes a result may take: the server's max_payload less room for headers.
    max_result_bytes: int = DEFAULT_MAX_PAYLOAD - HEADER_ROOM
    # `rule_evaluations_total` children by result, then rule name, bound on first use.
    _evaluation_counters: dict[str, dict[str, Counter]] = field(
        default_factory=lambda: {"matched": {}, "no_match": {}, "error": {}},
        init=False,
        repr=False,
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
        dry_run: bool = False,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> Engine:
        runner = StepRunner(actions=actions, secrets=secrets, metrics=metrics)
        return cls(
            index=index,
            runner=runner,
            secrets=secrets,
            guards=guards,
            metrics=metrics,
            dry_run=dry_run,
            max_result_bytes=max_payload - HEADER_ROOM,
        )

    def fired(self, event: Event) -> tuple[Rule, ...]:
        """The rules this event fires, highest priority first (pure)."""
        if not self.index.candidates(event.subject):
            return ()  # the common case under load: no rule listens here; build nothing
        matches = self.index.match(event.subject, event.payload, self.context(event))
        if self.metrics is not None:
            self._count_evaluations(self.metrics, matches)
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

    def _count_evaluations(self, metrics: Metrics, matches: Matches) -> None:
        """One `rule_evaluations_total` increment per rule in play: those that fired are
        `matched`, a `when` that raised (with a message) is `error`, every other rule,
        evaluated or ruled out by the index, `no_match`. `fired` and `errors` come in the
        order of `in_play`, so one walk pairs them up."""
        fired, errors = matches.fired, matches.errors
        counters = self._evaluation_counters
        matched, no_match = counters["matched"], counters["no_match"]
        f = e = 0
        for rule in matches.in_play:
            if f < len(fired) and fired[f] is rule:
                f += 1
                child = matched.get(rule.name) or self._bind(metrics, rule.name, "matched")
            elif e < len(errors) and errors[e][0] is rule:
                result = "error" if errors[e][1].error else "no_match"  # blank: as it was
                e += 1
                child = self._bind(metrics, rule.name, result)
            else:
                child = no_match.get(rule.name) or self._bind(metrics, rule.name, "no_match")
            child.inc()

    def _bind(self, metrics: Metrics, name: str, result: str) -> Counter:
        """The rule's `rule_evaluations_total` child for `result`, bound once, not per event."""
        found = self._evaluation_counters[result].get(name)
        if found is None:
            found = self._evaluation_counters[result][name] = metrics.rule_evaluations.labels(
                name, result
            )
        return found

    async def process(self, event: Event, rules: tuple[Rule, ...] | None = None) -> list[Result]:
        """Fire every matching rule (`rules`, when the caller matched already), each
        independently and concurrently."""
        if self.guards is not None and resolving(event):
            await self._close_verifications(event)
        if rules is None:
            rules = self.fired(event)
        if not rules:
            return []
        if len(rules) == 1:
            return [await self.run_rule(rules[0], event)]
        return list(await asyncio.gather(*(self.run_rule(rule, event) for rule in rules)))

    def context(self, event: Event) -> dict[str, object]:
        return {
            "event": event.payload,
            "subject": event.subject,
            "headers": event.headers,
            "event_id": event.event_id,
            "trace_id": event.trace_id,
            "now": self.now(),
        }

    async def run_rule(self, rule: Rule, event: Event) -> Result:
        guards = self.guards
        # Only a redelivered message can have completed before: a first delivery saves the
        # look-up (a round trip to the state bucket on every event otherwise).
        if (
            guards is not None
            and event.redelivered
            and (stored := await guards.completed(rule, event)) is not None
        ):
            # Redelivered after it finished: report the same result again, run nothing.
            if self.metrics is not None:
                self.metrics.rule_results.labels(rule.name, "deduplicated").inc()
            return Result.from_json(stored)
        result = await self._guarded_run(rule, event)
        if guards is not None:
            await guards.record(rule, event, result.to_json())
        return result

    async def _guarded_run(self, rule: Rule, event: Event) -> Result:
        started = self.now()
        context = self.context(event) | {"rule": rule.name, "results": {}}
        acts = not (self.dry_run or rule.dry_run)  # a real run: spends budget, awaits verify
        dry_run = self.simulate or not acts
        try:
            context["vars"] = render_vars(rule, context)
            bucket = throttle_bucket(rule, context)
        except TemplateError as exc:
            return self._finish(rule, event, started, "failed", (), reason=self._mask(exc))
        if self.guards is None:
            return await self._run_steps(rule, event, context, started, dry_run)
        admission = await self.guards.admit(rule, event, bucket, spend=acts)
        if admission.status != "run":
            return self._finish(rule, event, started, admission.status, (), admission.reason)
        try:
            result = await self._run_steps(rule, event, context, started, dry_run)
        finally:
            await self.guards.release(admission)
        if rule.verify is not None and acts and result.status in ("succeeded", "dry_run"):
            await self.guards.expect(rule, event, verify_key(rule, context), bucket)
        return result

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
        return self._finish(rule, event, started, status, steps)

    async def _close_verifications(self, event: Event) -> None:
        assert self.guards is not None
        for rule in self.index.candidates(event.subject):
            if rule.verify is None:
                continue
            context = self.context(event) | {"rule": rule.name}
            try:
                context["vars"] = render_vars(rule, context)
                key = verify_key(rule, context)
            except TemplateError as exc:
                log.warning(
                    "rule %s: verify key: %s",
                    rule.name,
                    self._mask(exc),
                    extra=_log_extra(event, rule),
                )
                continue
            if await self.guards.resolve(rule, event, key) and self.metrics is not None:
                self.metrics.verifications.labels(rule.name, "resolved").inc()

    def _finish(
        self,
        rule: Rule,
        event: Event,
        started: dt.datetime,
        status: str,
        steps: tuple[StepResult, ...],
        reason: str | None = None,
    ) -> Result:
        result = Result(
            event_id=event.event_id,
            trace_id=event.trace_id,
            rule=rule.name,
            subject=event.subject,
            status=status,
            started_at=started,
            finished_at=self.now(),
            redelivered=event.redelivered,
            steps=steps,
            reason=reason,
        )
        result = _fitted(result, self.max_result_bytes)
        if self.metrics is not None:
            self.metrics.rule_results.labels(rule.name, status).inc()
        log.info(
            "rule %s %s for event %s",
            rule.name,
            status,
            event.event_id,
            extra=_log_extra(event, rule),
        )
        return result

    def _mask(self, exc: Exception) -> str:
        return str(self.secrets.mask(str(exc)))


def _fitted(result: Result, limit: int) -> Result:
    """`result`, with outputs cut when its JSON would not fit `limit` bytes (it must be
    storable: a result that cannot be stored would re-run every step)."""
    body = result.to_json()
    if len(dumps(body).encode()) <= limit:
        return result
    return Result.from_json(fit_result(body, limit))


def render_vars(rule: Rule, context: Mapping[str, object]) -> dict[str, object]:
    """Render `vars` in order; each sees the ones before it as `vars.x`."""
    values: dict[str, object] = {}
    scope = dict(context)
    scope["vars"] = values
    for name, template in rule.vars:
        values[name] = template.render(scope)
    return values


def throttle_bucket(rule: Rule, context: Mapping[str, object]) -> str:
    """The throttle key for this event; one bucket per rule when the rule gives none."""
    if rule.throttle is None or rule.throttle.key is None:
        return ""
    return str(rule.throttle.key.render(context))


def verify_key(rule: Rule, context: Mapping[str, object]) -> str:
    if rule.verify is None or rule.verify.key is None:
        return str(context["event_id"])
    return str(rule.verify.key.render(context))


def resolving(event: Event) -> bool:
    return event.payload.get("status") == "resolved"


def _asks_for_resolved(rule: Rule) -> bool:
    return any(c.path == ("status",) for c in rule.conditions)


def _log_extra(event: Event, rule: Rule) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id, "rule": rule.name}
