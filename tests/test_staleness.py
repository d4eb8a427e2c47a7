"""Which first deliveries may be stale (remediator.engine.staleness): pure, no server."""

from __future__ import annotations

import pytest

from remediator.engine.staleness import may_be_stale
from remediator.model import Delivery, Event


@pytest.mark.parametrize(
    ("num_delivered", "age", "since_reconnect", "stale"),
    [
        (1, 0.01, None, False),  # fresh, never reconnected: no look-up
        (2, 0.01, None, True),  # a redelivery
        (1, 31.0, None, True),  # held somewhere past ack_wait (a frozen daemon's socket)
        (1, 16.0, None, True),  # past half of it: room for clocks that disagree
        (1, None, None, True),  # age unknown: assume the worst
        (1, 0.01, 5.0, True),  # just after a reconnect
        (1, 0.01, 31.0, False),  # long after it
    ],
)
def test_may_be_stale(
    num_delivered: int, age: float | None, since_reconnect: float | None, stale: bool
) -> None:
    found = may_be_stale(
        num_delivered=num_delivered, age=age, ack_wait=30.0, since_reconnect=since_reconnect
    )
    assert found is stale


def test_a_stale_first_delivery_may_have_completed_but_is_no_redelivery() -> None:
    delivery = Delivery(stream="S", sequence=1, num_delivered=1, may_be_stale=True)
    event = Event(
        subject="a", headers={}, payload={}, event_id="e", trace_id="t", delivery=delivery
    )
    assert event.may_have_completed and not event.redelivered
    fresh = Event(subject="a", headers={}, payload={}, event_id="e", trace_id="t")
    assert not fresh.may_have_completed
