"""Every Prometheus metric remediator exports, on a registry it is handed.

Metric names and labels are part of the user-facing contract. Label values
come only from rule names, step names and fixed vocabularies, never from
event data, so a flood of odd alerts cannot explode cardinality.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DEAD_LETTER_REASONS = (
    "invalid_json",
    "not_an_object",
    "invalid_subject",
    "infrastructure",
    "max_deliveries",
)
ESCALATION_REASONS = ("circuit_open", "budget_spent", "not_resolved", "approval_expired")
PROMETHEUS_RESULTS = ("ok", "empty", "error")
APPROVAL_RESULTS = ("requested", "approved", "denied", "expired")

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


class Metrics:
    """The daemon's metrics. Tests read them with `registry.get_sample_value`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._declare_events(registry)
        self._declare_rules(registry)
        self._declare_steps(registry)
        self._declare_backlog(registry)
        self._declare_control(registry)
        self._declare_prometheus(registry)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for result in ("ok", "error"):
            self.rules_reloads.labels(result)

    def _declare_events(self, r: CollectorRegistry) -> None:
        self.events_received = Counter(
            "remediator_events_received",
            "Events received, by first subject token",
            ["subject_root"],
            registry=r,
        )
        self.event_duration = Histogram(
            "remediator_event_duration_seconds",
            "From receipt of an event to its ack",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "remediator_dead_letters",
            "Messages sent to the dead-letter subject",
            ["reason"],
            registry=r,
        )
        self.redeliveries = Counter(
            "remediator_redeliveries", "Messages received more than once", registry=r
        )

    def _declare_rules(self, r: CollectorRegistry) -> None:
        self.rule_evaluations = Counter(
            "remediator_rule_evaluations",
            "Rules evaluated against an event whose subject matched",
            ["rule", "result"],
            registry=r,
        )
        self.rule_results = Counter(
            "remediator_rule_results", "Fired rules by final status", ["rule", "status"], registry=r
        )
        self.verifications = Counter(
            "remediator_verifications", "Verification outcomes", ["rule", "result"], registry=r
        )
        self.rules_loaded = Gauge("remediator_rules_loaded", "Rules in force", registry=r)
        self.rules_reloads = Counter(
            "remediator_rules_reloads", "Rule reloads by result", ["result"], registry=r
        )

    def _declare_steps(self, r: CollectorRegistry) -> None:
        self.steps = Counter(
            "remediator_steps",
            "Steps by final status",
            ["rule", "step", "kind", "status"],
            registry=r,
        )
        self.step_duration = Histogram(
            "remediator_step_duration_seconds",
            "Step duration including retries",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.step_retries = Counter(
            "remediator_step_retries", "Step attempts after the first", ["rule", "step"], registry=r
        )

    def _declare_backlog(self, r: CollectorRegistry) -> None:
        self.inflight = Gauge(
            "remediator_inflight_events", "Events received and not yet acked", registry=r
        )
        self.consumer_pending = Gauge(
            "remediator_consumer_pending_messages",
            "Messages in the stream not yet delivered",
            ["stream", "consumer"],
            registry=r,
        )
        self.consumer_ack_pending = Gauge(
            "remediator_consumer_ack_pending_messages",
            "Messages delivered and not yet acked",
            ["stream", "consumer"],
            registry=r,
        )

    def _declare_control(self, r: CollectorRegistry) -> None:
        self.escalations = Counter(
            "remediator_escalations", "Escalations published, by reason", ["reason"], registry=r
        )
        for reason in ESCALATION_REASONS:
            self.escalations.labels(reason)
        self.paused = Gauge(
            "remediator_paused",
            "1 while a pause is in force (`all` or the rule)",
            ["scope"],
            registry=r,
        )
        self.approvals = Counter(
            "remediator_approvals", "Approval requests by outcome", ["rule", "result"], registry=r
        )
        self.approvals_pending = Gauge(
            "remediator_approvals_pending", "Approval requests waiting for a decision", registry=r
        )
        self.slots_in_use = Gauge(
            "remediator_concurrency_slots_in_use",
            "Concurrency slots this replica holds (runs in flight), by rule",
            ["rule"],
            registry=r,
        )
        self.slots_waiting = Gauge(
            "remediator_concurrency_waiting",
            "Runs of this replica waiting for a concurrency slot, by rule",
            ["rule"],
            registry=r,
        )
        self.ladder_escalations = Counter(
            "remediator_ladder_escalations",
            "Rules fired by a failed verification's escalate_rule, by rule and the rule fired",
            ["rule", "to"],
            registry=r,
        )

    def _declare_prometheus(self, r: CollectorRegistry) -> None:
        self.prometheus_queries = Counter(
            "remediator_prometheus_queries",
            "Prometheus queries (steps and verification) by result",
            ["result"],
            registry=r,
        )
        for result in PROMETHEUS_RESULTS:
            self.prometheus_queries.labels(result)
        self.prometheus_duration = Histogram(
            "remediator_prometheus_query_duration_seconds",
            "Time Prometheus took to answer a query, failures included",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )

    def know_rules(self, names: Iterable[str]) -> None:
        """Create every rule's result series at zero, so alerts on `rate()` and
        `increase()` see the first failure instead of a series that did not exist."""
        for name in names:  # the two statuses operators alert on; others appear when used
            for status in ("failed", "throttled"):
                self.rule_results.labels(name, status)
