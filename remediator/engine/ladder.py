"""Escalation ladders: a fix that did not hold fires the next rule (`verify.escalate_rule`).

When a verification fails (no resolving event in time, or the query never held), the
one replica that ended its record (`verification.Verifier.expire`, compare-and-set)
fires the named rule with the original event plus
`escalation: {from_rule, reason, result_event_id}`. The next rule runs through the
engine's ordinary path, so its own throttle, windows, pause and approval apply (a
cordon may ask a human where a restart did not), and its own `verify.escalate_rule`
makes the ladder longer. The event keeps its id: `show EVENT_ID` tells the whole climb.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from remediator.model import Event, Result

if TYPE_CHECKING:
    from remediator.engine.engine import Engine

log = logging.getLogger(__name__)


async def climb(engine: Engine, failed: Sequence[Mapping[str, object]]) -> list[Result]:
    """Fire the next rung of every failed verification that names one."""
    rules = {rule.name: rule for rule in engine.index.rules}
    results = []
    for record in failed:
        target = record.get("escalate_rule")
        if not isinstance(target, str):
            continue
        rule = rules.get(target)
        if rule is None:  # removed by a reload since the run: `validate` refused it before
            log.error("rule %s: escalate_rule %s is not loaded", record["rule"], target)
            continue
        if engine.metrics is not None:
            engine.metrics.ladder_escalations.labels(str(record["rule"]), target).inc()
        results.append(await engine.run_rule(rule, rung(record)))
    return results


def rung(record: Mapping[str, object]) -> Event:
    """The original event of a failed verification, with where it comes from."""
    payload = record.get("payload")
    headers = record.get("headers")
    escalation = {
        "from_rule": record["rule"],
        "reason": "not_resolved",
        "detail": record.get("detail"),
        "result_event_id": record["event_id"],
    }
    return Event(
        subject=str(record["subject"]),
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        payload={**(payload if isinstance(payload, dict) else {}), "escalation": escalation},
        event_id=str(record["event_id"]),
        trace_id=str(record["trace_id"]),
    )
