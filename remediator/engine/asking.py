"""Asking a human first: file an approval request and announce it, and later run the
steps of an approved one, rendered from the event the request stored.

Functions over the parts of an engine they use (`Parts`: its runner, desk,
guards and `ResultBuilder`; the engine imports this module, never the other
way round), kept apart because the approval path is its own story: one request
per firing, exactly one run per approved request, verification starting with
the run rather than with the question.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Protocol

from remediator.engine.control import ApprovalDesk, ApprovalRequest
from remediator.engine.guards import Guards
from remediator.engine.outcome import ResultBuilder
from remediator.engine.rulecontext import render_vars, throttle_bucket, verify_key
from remediator.engine.runner import StepRunner
from remediator.engine.slots import Slots, slotted
from remediator.errors import TemplateError
from remediator.model import Event, Result, Rule, StepResult

log = logging.getLogger(__name__)


class Parts(Protocol):
    """What the approval path uses of an engine."""

    @property
    def runner(self) -> StepRunner: ...
    @property
    def desk(self) -> ApprovalDesk | None: ...
    @property
    def guards(self) -> Guards | None: ...
    @property
    def results(self) -> ResultBuilder: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def slots(self) -> Slots | None: ...
    def now(self) -> dt.datetime: ...
    def context(self, event: Event) -> dict[str, object]: ...
    def nothing_done(self, steps: tuple[StepResult, ...]) -> bool: ...


async def ask(
    engine: Parts,
    rule: Rule,
    event: Event,
    context: dict[str, object],
    started: dt.datetime,
    rendered: tuple[StepResult, ...],
) -> Result:
    """File the request, announce it (`notify`), and report that it waits."""
    assert engine.desk is not None and rule.approval is not None
    key = throttle_bucket(rule, context)  # rendered once already: the guards admitted it
    request = await engine.desk.open(
        ApprovalRequest.ask(
            rule.name,
            event,
            rendered,
            engine.now(),
            rule.approval.timeout,
            rule_digest=rule.digest,
            throttle_key=key,
        )
    )
    asked = context["approval"] = request.context()
    notified = tuple(
        [
            await engine.runner.run_step(rule, s, context, dry_run=False)
            for s in rule.approval.notify
        ]
    )
    why = f"waiting for approval {request.id} until {asked['expires_at']}"
    return engine.results.finish(
        rule, event, started, "awaiting_approval", notified, why, approval_id=request.id
    )


async def unrenderable(
    engine: Parts,
    rule: Rule,
    event: Event,
    context: dict[str, object],
    started: dt.datetime,
    rendered: tuple[StepResult, ...],
) -> Result:
    """The preview failed (a template typo, a request the kind refuses): report `failed`
    and ask no one, since approving would run a step certain to fail. `on_failure` runs
    as it would after that failure, so whoever it tells hears of the typo."""
    previews = rendered[: len(rendered) - len(rule.on_failure)]
    error = next((s.error for s in previews if s.status == "failed" and s.error), "")
    context = context | {"error": error, "results": {}}
    dry_run = engine.dry_run or rule.dry_run
    handled = [
        await engine.runner.run_step(rule, step, context, dry_run=dry_run)
        for step in rule.on_failure
    ]
    why = f"nobody was asked: the steps do not render: {error}"
    return engine.results.finish(rule, event, started, "failed", (*previews, *handled), why)


async def run_approved(engine: Parts, rule: Rule, request: ApprovalRequest) -> Result:
    """Run the steps of an approved request, rendered from the event it stored."""
    event = request.event()
    started = engine.now()
    context = engine.context(event) | {"rule": rule.name, "results": {}}
    context["approval"] = request.approval()
    decided = request.approval()
    try:
        context["vars"] = render_vars(rule, context)
    except TemplateError as exc:
        reason = engine.results.mask(exc)
        return engine.results.finish(rule, event, started, "failed", (), reason, approval=decided)
    dry_run = engine.dry_run or rule.dry_run
    run = functools.partial(_approved_steps, engine, rule, request, context, started, dry_run)
    if rule.concurrency is None or dry_run or engine.slots is None:
        return await run()
    # A yes from a human is no licence to pass the rule's limit per group (SPEC §17).
    refuse = functools.partial(
        engine.results.finish, rule, event, started, "throttled", (), approval=decided
    )
    try:
        return await slotted(engine.slots, rule, context, run, refuse)
    except TemplateError as exc:
        reason = engine.results.mask(exc)
        return engine.results.finish(rule, event, started, "failed", (), reason, approval=decided)


async def _approved_steps(
    engine: Parts,
    rule: Rule,
    request: ApprovalRequest,
    context: dict[str, object],
    started: dt.datetime,
    dry_run: bool,
) -> Result:
    event, decided = request.event(), request.approval()
    steps, ok = await engine.runner.run_steps(rule, context, dry_run=dry_run)
    status = "dry_run" if dry_run else "succeeded" if ok else "failed"
    if status == "succeeded" and engine.nothing_done(steps):
        status = "skipped"
    if engine.guards is not None and rule.verify is not None and status == "succeeded":
        await _verify_after_run(engine, rule, event, context)
    return engine.results.finish(rule, event, started, status, steps, approval=decided)


async def _verify_after_run(
    engine: Parts, rule: Rule, event: Event, context: dict[str, object]
) -> None:
    """Verification starts with the run, not with the question."""
    assert engine.guards is not None
    try:
        bucket, key = throttle_bucket(rule, context), verify_key(rule, context)
    except TemplateError as exc:
        log.warning("rule %s: verify key: %s", rule.name, engine.results.mask(exc))
        return
    await engine.guards.expect(rule, event, key, bucket, context)
