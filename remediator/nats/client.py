"""nats-py's client, with what one hostile message could do to it undone at our edge.

nats-py decodes every delivered subject as strict UTF-8 inside its read loop,
and that loop ends on any exception it does not expect: one message published
on `alerts.\\xff\\xfe` (valid for the server, which checks no encoding) left the
connection up but deaf until a ping timeout, minutes later. Here subjects are
decoded with `surrogateescape`, so the message reaches the daemon, which
dead-letters it (`invalid_subject`); and the loop's death, should anything else
end it, is visible (`reader_dead`) so liveness can fail instead of idling.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg


class TolerantClient(Client):
    """A nats-py client whose read loop survives subjects that are not UTF-8."""

    def _build_message(
        self,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Msg:
        return self.msg_class(
            subject=subject.decode(errors="surrogateescape"),
            reply=reply.decode(errors="surrogateescape"),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )


def reader_dead(nc: Client) -> bool:
    """Connected, yet the task reading from the server has ended: nothing more will be
    received on this connection (a reconnect starts a new reader)."""
    task = nc._reading_task
    return bool(nc.is_connected) and task is not None and task.done()


def valid_subject(subject: str) -> bool:
    """False for a subject decoded from bytes that are not UTF-8 (it holds surrogates)."""
    if subject.isascii():
        return True
    try:
        subject.encode()
    except UnicodeEncodeError:
        return False
    return True


def printable_subject(subject: str) -> str:
    """A subject that is not UTF-8, its bad bytes written as `\\xff`: safe in JSON and logs."""
    return subject.encode(errors="surrogateescape").decode(errors="backslashreplace")
