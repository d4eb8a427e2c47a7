"""`rule_evaluations_total`, counted the cheap way: per fired rule and per failed `when`.

A per-rule increment for every rule in play would make an event's cost grow with the
rules the indexes already ruled out (SPEC §8); and each rule's counter child is bound
once, not looked up by label per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.metrics import Metrics
from remediator.rules.matching import Matches


@dataclass(slots=True)
class Evaluations:
    metrics: Metrics
    # Children by result, then rule name, bound on first use.
    _bound: dict[str, dict[str, Counter]] = field(
        default_factory=lambda: {"matched": {}, "error": {}}
    )

    def count(self, matches: Matches) -> None:
        matched = self._bound["matched"]
        for rule in matches.fired:
            (matched.get(rule.name) or self._bind(rule.name, "matched")).inc()
        for rule, verdict in matches.errors:
            if verdict.error:  # blank: a `when` that raised with no message, as it was
                self._bind(rule.name, "error").inc()

    def _bind(self, name: str, result: str) -> Counter:
        found = self._bound[result].get(name)
        if found is None:
            found = self._bound[result][name] = self.metrics.rule_evaluations.labels(name, result)
        return found
