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
from dataclasses import dataclass

from remediator.actions.base import ActionSet
from remediator.errors import TemplateError
from remediator.matching import RuleIndex
from remediator.metrics import Metrics
from remediator.model import Event, Result, Rule, StepResult
from remediator.runner import StepRunner
from remediator.templating import Secrets

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True, kw_only=True)
class Engine:
    index: RuleIndex
    runner: StepRunner
    secrets: Secrets
    metrics: Metrics | None = None
    dry_run: bool = False
    now: Callable[[], dt.datetime] = utcnow

    @classmethod
    def build(
        cls,
        index: RuleIndex,
        actions: ActionSet,
        secrets: Secrets,
        *,
        metrics: Metrics | None = None,
        dry_run: bool = False,
    ) -> Engine:
        runner = StepRunner(actions=actions, secrets=secrets, metrics=metrics)
        return cls(index=index, runner=runner, secrets=secrets, metrics=metrics, dry_run=dry_run)

    def fired(self, event: Event) -> tuple[Rule, ...]:
        """The rules this event fires, highest priority first (pure)."""
        matches = self.index.match(event.subject, event.payload, self.context(event))
        if self.metrics is not None:
            for rule, verdict in matches.evaluations:
                result = "error" if verdict.error else "matched" if verdict.matched else "no_match"
                self.metrics.rule_evaluations.labels(rule.name, result).inc()
        for rule, verdict in matches.evaluations:
            if verdict.error:
                log.warning(
                    "rule %s: when failed for event %s: %s",
                    rule.name,
                    event.event_id,
                    verdict.error,
                    extra=_log_extra(event, rule),
                )
        return matches.fired

    async def process(self, event: Event) -> list[Result]:
        """Fire every matching rule, each independently and concurrently."""
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
        started = self.now()
        context = self.context(event) | {"rule": rule.name, "results": {}}
        dry_run = self.dry_run or rule.dry_run
        try:
            context["vars"] = render_vars(rule, context)
        except TemplateError as exc:
            return self._finish(rule, event, started, "failed", (), reason=self._mask(exc))
        steps, ok = await self.runner.run_steps(rule, context, dry_run=dry_run)
        status = "dry_run" if dry_run else "succeeded" if ok else "failed"
        return self._finish(rule, event, started, status, steps)

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


def render_vars(rule: Rule, context: Mapping[str, object]) -> dict[str, object]:
    """Render `vars` in order; each sees the ones before it as `vars.x`."""
    values: dict[str, object] = {}
    scope = dict(context)
    scope["vars"] = values
    for name, template in rule.vars:
        values[name] = template.render(scope)
    return values


def _log_extra(event: Event, rule: Rule) -> dict[str, object]:
    return {"trace_id": event.trace_id, "event_id": event.event_id, "rule": rule.name}
