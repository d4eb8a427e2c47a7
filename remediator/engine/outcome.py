"""Building a rule's `Result`: one place for the engine and the approval path.

A result is made once, cut to fit what the server stores, encoded once (the
bytes go to the completion record and the result event alike), counted in
`rule_results_total` and logged. `Engine` and `asking` both finish through a
`ResultBuilder`, so neither reaches into the other.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.engine.limits import DEFAULT_MAX_PAYLOAD, HEADER_ROOM, fitted
from remediator.metrics import Metrics
from remediator.model import Event, Result, Rule, StepResult
from remediator.rules.secrets import Secrets

log = logging.getLogger("remediator.engine.engine")  # the logger result lines always had


@dataclass(slots=True, kw_only=True)
class ResultBuilder:
    secrets: Secrets
    clock: Callable[[], dt.datetime]
    metrics: Metrics | None = None
    # JSON bytes a result may take: the server's max_payload less room for headers.
    max_bytes: int = DEFAULT_MAX_PAYLOAD - HEADER_ROOM
    _counters: dict[tuple[str, str], Counter] = field(default_factory=dict, init=False, repr=False)

    def finish(
        self,
        rule: Rule,
        event: Event,
        started: dt.datetime,
        status: str,
        steps: tuple[StepResult, ...],
        reason: str | None = None,
        *,
        approval_id: str | None = None,
        approval: Mapping[str, object] | None = None,
    ) -> Result:
        result = Result(
            event_id=event.event_id,
            trace_id=event.trace_id,
            rule=rule.name,
            subject=event.subject,
            status=status,
            started_at=started,
            finished_at=self.clock(),
            redelivered=event.redelivered,
            steps=steps,
            reason=reason,
            approval_id=approval_id,
            approval=approval,
            origin=_origin(event),
            trigger=event.trigger,
        )
        result, _ = fitted(result, self.max_bytes)  # encoded once: the result keeps it
        if self.metrics is not None:
            self._count(self.metrics, rule.name, status).inc()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rule %s %s for event %s",
                rule.name,
                status,
                event.event_id,
                extra={"trace_id": event.trace_id, "event_id": event.event_id, "rule": rule.name},
            )
        return result

    def mask(self, exc: Exception) -> str:
        return str(self.secrets.mask(str(exc)))

    def _count(self, metrics: Metrics, name: str, status: str) -> Counter:
        """The rule's `rule_results_total` child for `status`, bound once."""
        found = self._counters.get((name, status))
        if found is None:
            found = self._counters[name, status] = metrics.rule_results.labels(name, status)
        return found


def _origin(event: Event) -> tuple[str, int] | None:
    delivery = event.delivery
    return None if delivery is None else (delivery.stream, delivery.sequence)
