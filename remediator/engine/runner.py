"""Running a rule's steps: order, `when`, timeouts, retries, `on_failure`, dry runs.

Retries are exponential with jitter, capped by `max_backoff`; a `Retry-After`
from the target wins when it is shorter than the cap. Permanent errors
(template errors, most 4xx, SSH authentication) are not retried. Every output
and error is masked before it leaves this module, so no secret reaches a
result event or a log line, and capped (`limits`), so no output can make a
result too big to store.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from remediator.actions.base import ActionSet, Answering, Previewing, StepContext
from remediator.engine.limits import cap_output, cap_text
from remediator.engine.unknowns import DryResults, Unknown
from remediator.errors import StepError, StepTimeout, TemplateError
from remediator.metrics import Metrics
from remediator.model import RetryPolicy, Rule, Step, StepResult
from remediator.rules.secrets import Secrets

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # a dry run's output for a step it cannot decide: {unknown: why}


@dataclass(slots=True, kw_only=True)
class StepRunner:
    actions: ActionSet
    secrets: Secrets
    metrics: Metrics | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    # Metric children bound once per label set, not per step: `labels()` is a lock and a
    # dictionary look-up of a tuple each time, on the path of every fired rule.
    _children: dict[tuple[str, ...], tuple[Counter, Histogram]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def run_steps(
        self, rule: Rule, context: dict[str, object], *, dry_run: bool
    ) -> tuple[tuple[StepResult, ...], bool]:
        """Run the steps in order; on a final failure run `on_failure` and stop."""
        results: dict[str, object] = {}
        context["results"] = DryResults(results) if dry_run else results
        done: list[StepResult] = []
        for step in rule.steps:
            outcome = await self.run_step(rule, step, context, dry_run=dry_run)
            done.append(outcome)
            if not dry_run or outcome.status == "succeeded":  # a dry run's given answer
                results[step.name] = outcome.output
            if outcome.status == "failed" and not step.continue_on_failure:
                context["error"] = outcome.error or ""
                for handler in rule.on_failure:
                    done.append(await self.run_step(rule, handler, context, dry_run=dry_run))
                return tuple(done), False
        return tuple(done), True

    async def run_step(
        self, rule: Rule, step: Step, context: Mapping[str, object], *, dry_run: bool
    ) -> StepResult:
        started = time.perf_counter()
        try:
            rendered = await _render(step, context)
        except TemplateError as exc:
            if dry_run and isinstance(exc.__cause__, Unknown):  # undecided, not wrong
                output = {UNKNOWN: str(exc.__cause__)}
                return self._record(rule, step, "dry_run", 0, started, output=output)
            return self._record(rule, step, "failed", 0, started, error=str(exc))
        if rendered is None:
            return self._record(rule, step, "skipped", 0, started)
        request = rendered
        if dry_run:
            return self._dry_run(rule, step, request, context, started)
        assert isinstance(request, Mapping)  # the loader compiles a kind's mapping to a mapping
        return await self._attempts(rule, step, request, context, started)

    def _dry_run(
        self,
        rule: Rule,
        step: Step,
        request: object,
        context: Mapping[str, object],
        started: float,
    ) -> StepResult:
        """The rendered step, or what the kind says it would send (`Previewing`); a query
        whose answer was given (a rule test's `answers`) succeeds with it."""
        action = self.actions.get(step.kind)
        if isinstance(action, Answering) and isinstance(request, Mapping):
            answer = action.answer(request, self._step_context(rule, step, context))
            if answer is not None:
                return self._record(rule, step, "succeeded", 1, started, output=answer)
        if not isinstance(action, Previewing) or not isinstance(request, Mapping):
            return self._record(rule, step, "dry_run", 0, started, output=request)
        try:
            output = action.preview(request)
        except StepError as exc:  # the real run would fail the same way, permanently
            return self._record(rule, step, "failed", 0, started, error=exc.message)
        return self._record(rule, step, "dry_run", 0, started, output=output)

    async def _attempts(
        self,
        rule: Rule,
        step: Step,
        request: Mapping[str, object],
        context: Mapping[str, object],
        started: float,
    ) -> StepResult:
        action = self.actions[step.kind]
        step_context = self._step_context(rule, step, context)
        policy = step.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                async with asyncio.timeout(step.timeout):
                    output = await action.run(request, step_context)
                return self._record(rule, step, "succeeded", attempt, started, output=output)
            except TimeoutError:
                error: StepError = StepTimeout(step.timeout)
            except StepError as exc:
                error = exc
            except Exception as exc:  # an action bug must fail the step, not the daemon
                log.exception("rule %s: step %s raised", rule.name, step.name)
                error = StepError(f"{type(exc).__name__}: {exc}")
            if error.permanent or attempt == policy.attempts:
                return self._record(
                    rule, step, "failed", attempt, started, output=error.output, error=error.message
                )
            if self.metrics is not None:
                self.metrics.step_retries.labels(rule.name, step.name).inc()
            await self.sleep(backoff(policy, attempt, error.retry_after, self.rng))
        raise AssertionError("unreachable: attempts >= 1")  # pragma: no cover

    @staticmethod
    def _step_context(rule: Rule, step: Step, context: Mapping[str, object]) -> StepContext:
        return StepContext(
            event_id=str(context["event_id"]),
            trace_id=str(context["trace_id"]),
            rule=rule.name,
            step=step.name,
            timeout=step.timeout,
        )

    def _record(
        self,
        rule: Rule,
        step: Step,
        status: str,
        attempts: int,
        started: float,
        output: object = None,
        error: str | None = None,
    ) -> StepResult:
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self._count(self.metrics, rule, step, status, seconds)
        masked_error = None if error is None else cap_text(str(self.secrets.mask(error)))
        if masked_error:
            log.warning(
                "rule %s: step %s %s after %d attempt(s): %s",
                rule.name,
                step.name,
                status,
                attempts,
                masked_error,
                extra={"rule": rule.name},
            )
        return StepResult(
            name=step.name,
            kind=step.kind,
            status=status,
            attempts=attempts,
            duration_ms=seconds * 1000,
            output=cap_output(self.secrets.mask(output)),
            error=masked_error,
        )

    def _count(self, metrics: Metrics, rule: Rule, step: Step, status: str, seconds: float) -> None:
        """The step's counter and histogram; their children bound once per label set."""
        labels = (rule.name, step.name, step.kind, status)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                metrics.steps.labels(*labels),
                metrics.step_duration.labels(step.kind),
            )
        children[0].inc()
        children[1].observe(seconds)


async def _render(step: Step, context: Mapping[str, object]) -> object | None:
    """The step's request, or None when its `when` is false; rendered in a worker thread
    and awaited under the step timeout, so a template that runs long (nested loops: the
    sandbox's budgets cap sizes, not time) fails the step instead of blocking the event
    loop. Python cannot stop the thread: it runs on to the end of its loops, in the
    background, bounded by those budgets. A step whose templates are all plain reads and
    literals (`Step.instant`, most of them) renders inline: it cannot run long, and the
    thread hop cost more than the rendering (40% of a firing daemon's samples)."""

    def render() -> object | None:
        if step.when is not None and not step.when.render(context):
            return None
        return step.request.render(context)

    if step.instant:  # plain reads and literals: a thread would cost more than they do
        return render()
    try:
        async with asyncio.timeout(step.timeout):
            return await asyncio.to_thread(render)
    except TimeoutError:
        raise TemplateError(
            f"rendering took over the step timeout of {step.timeout:g}s", field=step.name
        ) from None


def backoff(
    policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random
) -> float:
    """Delay before attempt `attempt + 1`: exponential, jittered to spread a herd."""
    if retry_after is not None:
        return min(retry_after, policy.max_backoff)
    ceiling = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
