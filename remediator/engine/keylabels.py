"""The few labels of an alert an approver judges it by: which alert, where, how bad.

An approval row must say which host or workload a run will touch without shipping
the whole event (requests are kept in memory without it). So a request keeps its
event's key labels: an Alertmanager alert's `labels` (the first alert of a group),
else the event's own top-level scalars; the well-known names first, at most `LIMIT`.
Taking the key labels of key labels gives the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping

LIMIT = 8
WELL_KNOWN = (
    "alertname",
    "severity",
    "cluster",
    "namespace",
    "service",
    "deployment",
    "pod",
    "instance",
    "host",
    "job",
)
MAX_VALUE = 200  # characters: a label is a name, not a document


def key_labels(payload: Mapping[str, object]) -> dict[str, str]:
    """At most LIMIT name → value pairs, the well-known names first."""
    source = _labels_of(payload)
    scalars = {
        str(name): str(value)[:MAX_VALUE]
        for name, value in source.items()
        if isinstance(value, str | int | float | bool)
    }
    ordered = [n for n in WELL_KNOWN if n in scalars] + sorted(
        n for n in scalars if n not in WELL_KNOWN
    )
    return {name: scalars[name] for name in ordered[:LIMIT]}


def _labels_of(payload: Mapping[str, object]) -> Mapping[str, object]:
    labels = payload.get("labels")
    if isinstance(labels, Mapping):
        return labels
    alerts = payload.get("alerts")
    if isinstance(alerts, list) and alerts and isinstance(alerts[0], Mapping):
        first = alerts[0].get("labels")
        if isinstance(first, Mapping):
            return first
    return payload
