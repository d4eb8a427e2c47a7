"""What an approver sees of a request: the alert's key labels, masked; a failed preview."""

from __future__ import annotations

import datetime as dt

from remediator.engine.control import ApprovalRequest
from remediator.engine.events import Event
from remediator.engine.keylabels import LIMIT, key_labels
from remediator.http.approvalview import describe
from remediator.model import StepResult


def test_alertmanager_labels_first_well_known_names_first_bounded() -> None:
    labels = {f"extra{n}": "x" for n in range(20)} | {"instance": "web-3", "alertname": "Down"}
    found = key_labels({"labels": labels, "annotations": {"summary": "long text"}})
    assert list(found)[:2] == ["alertname", "instance"]
    assert len(found) == LIMIT
    group = {"alerts": [{"labels": {"alertname": "DiskFull", "host": "db-1"}}]}
    assert key_labels(group) == {"alertname": "DiskFull", "host": "db-1"}


def test_a_plain_event_gives_its_scalars_and_key_labels_of_key_labels_are_the_same() -> None:
    event = {"host": "web-1", "nested": {"a": 1}, "count": 3, "items": [1, 2]}
    found = key_labels(event)
    assert found == {"host": "web-1", "count": "3"}
    assert key_labels(found) == found


def test_a_request_shows_masked_labels_and_a_failed_preview() -> None:
    payload = {"host": "db-1", "token": "s3cret"}
    event = Event(subject="alerts.db", headers={}, payload=payload, event_id="E:1", trace_id="t")
    steps = [
        StepResult(name="promote", kind="http", status="dry_run"),
        StepResult(name="tell", kind="publish", status="failed", error="undefined: x"),
    ]
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    request = ApprovalRequest.ask("failover", event, steps, now, 1800.0)

    def mask(value: object) -> object:
        return {k: "***" if v == "s3cret" else v for k, v in value.items()}  # type: ignore[attr-defined]

    shown = describe(request, mask)
    assert shown["labels"] == {"host": "db-1", "token": "***"}
    assert shown["preview_failed"] is True
    assert "failover" in str(shown["asked_by"])
    assert shown["expires_at"] == "2026-12-07T00:30:00+00:00"
