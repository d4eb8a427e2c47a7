"""Asking a human first: file an approval request and announce it, and later run the
steps of an approved one, rendered from the event the request stored.

Functions over the `Engine` (they use its runner, desk, guards and result
building) kept apart because the approval path is its own story: one request
per firing, exactly one run per approved request, verification starting with
the run rather than with the question.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from remediator.engine.control import ApprovalRequest
from remediator.engine.rulecontext import render_vars, throttle_bucket, verify_key
from remediator.errors import TemplateError
from remediator.model import Event, Result, Rule, StepResult

if TYPE_CHECKING:
    from remediator.engine.engine import Engine

log = logging.getLogger(__name__)


async def ask(
    engine: Engine,
    rule: Rule,
    event: Event,
    context: dict[str, object],
    started: dt.datetime,
    rendered: tuple[StepResult, ...],
) -> Result:
    """File the request, announce it (`notify`), and report that it waits."""
    assert engine.desk is not None and rule.approval is not None
    request = await engine.desk.open(
        ApprovalRequest.ask(rule.name, event, rendered, engine.now(), rule.approval.timeout)
    )
    asked = context["approval"] = request.context()
    notified = tuple(
        [
            await engine.runner.run_step(rule, s, context, dry_run=False)
            for s in rule.approval.notify
        ]
    )
    why = f"waiting for approval {request.id} until {asked['expires_at']}"
    return engine._finish(
        rule, event, started, "awaiting_approval", notified, why, approval_id=request.id
    )


async def run_approved(engine: Engine, rule: Rule, request: ApprovalRequest) -> Result:
    """Run the steps of an approved request, rendered from the event it stored."""
    event = request.event()
    started = engine.now()
    context = engine.context(event) | {"rule": rule.name, "results": {}}
    context["approval"] = request.approval()
    decided = request.approval()
    try:
        context["vars"] = render_vars(rule, context)
    except TemplateError as exc:
        reason = engine._mask(exc)
        return engine._finish(rule, event, started, "failed", (), reason, approval=decided)
    dry_run = engine.dry_run or rule.dry_run
    steps, ok = await engine.runner.run_steps(rule, context, dry_run=dry_run)
    status = "dry_run" if dry_run else "succeeded" if ok else "failed"
    if status == "succeeded" and engine.nothing_done(steps):
        status = "skipped"
    if engine.guards is not None and rule.verify is not None and status == "succeeded":
        await _verify_after_run(engine, rule, event, context)
    return engine._finish(rule, event, started, status, steps, approval=decided)


async def _verify_after_run(
    engine: Engine, rule: Rule, event: Event, context: dict[str, object]
) -> None:
    """Verification starts with the run, not with the question."""
    assert engine.guards is not None
    try:
        bucket, key = throttle_bucket(rule, context), verify_key(rule, context)
    except TemplateError as exc:
        log.warning("rule %s: verify key: %s", rule.name, engine._mask(exc))
        return
    await engine.guards.expect(rule, event, key, bucket, context)
