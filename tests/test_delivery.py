"""The delivery facts read from a JetStream reply subject in one split (issue 25), the time
the stream stored it included (issue 23), agree with nats-py's own `msg.metadata`, in both
reply formats and on what is not one."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from remediator.nats.delivery import _facts

REPLIES = [
    "$JS.ACK.ALERTS.remediator.3.1042.977.1765000000000000000.12",
    "$JS.ACK._.ACCHASH.ALERTS.remediator.1.7.7.1765000000000000000.0",
    "$JS.ACK.hub.ACCHASH.ALERTS.remediator.5.99.40.1765000000000000000.3.xyz",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_the_reply_subject_gives_what_metadata_gives(reply: str) -> None:
    msg = Msg(_client=None, subject="alerts.x", reply=reply)  # type: ignore[arg-type]
    meta = msg.metadata
    assert meta.timestamp is not None
    stored = meta.timestamp.timestamp()
    assert _facts(msg) == (meta.stream, meta.sequence.stream, meta.num_delivered, stored)


def test_a_reply_that_is_no_ack_subject_is_refused_as_nats_py_refuses_it() -> None:
    msg = Msg(_client=None, subject="alerts.x", reply="_INBOX.abc.def")  # type: ignore[arg-type]
    with pytest.raises(NotJSMessageError):
        _facts(msg)
