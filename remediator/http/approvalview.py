"""What an approver sees of a request: enough to judge it without opening the event.

The public summary of a request (rule, subject, event, rendered steps, times, state)
plus the event's key labels (`engine.keylabels`), masked like every stored alert
the API serves, and whether the preview of any step failed (a step that could not
be rendered would fail when run too).
"""

from __future__ import annotations

from collections.abc import Callable

from remediator.engine.control import ApprovalRequest
from remediator.engine.keylabels import key_labels

Mask = Callable[[object], object]


def describe(request: ApprovalRequest, mask: Mask) -> dict[str, object]:
    """The request as the console and `/api/approvals` show it."""
    body = request.summary()
    body["labels"] = mask(key_labels(request.payload))
    body["preview_failed"] = any(
        isinstance(step, dict) and (step.get("status") == "failed" or step.get("error"))
        for step in request.steps
    )
    # What the approver decides on: who asked (the rule, for this event) and until when.
    body["asked_by"] = f"rule {request.rule} for event {request.event_id}"
    return body
