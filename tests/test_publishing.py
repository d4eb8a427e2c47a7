"""Every write checked before it is sent, and acknowledged publishes that give back their
slot whatever happens (issue 24: items 2 and 3), against a real nats-server."""

from __future__ import annotations

import time

import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig

from remediator.errors import Unpublishable
from remediator.nats.kvstore import KVStore
from remediator.nats.publishing import STALLED_AFTER, AckedPublisher, check_message
from remediator.rules.subjects import MAX_SUBJECT_BYTES
from tests.support.nats import NatsServer


async def test_a_failed_publish_gives_its_slot_back(nc: Client, unique: str) -> None:
    """nats-py's publish_async kept the slot of every publish that raised: 4,000 of them
    and every later write waited forever. Here two slots survive ten failures."""
    await nc.jetstream().add_stream(StreamConfig(name=f"S{unique}", subjects=[f"{unique}.>"]))
    publisher = AckedPublisher(nc, max_pending=2)
    too_big = b"x" * (nc.max_payload + 1)  # nats-py raises before sending anything
    for _ in range(10):
        with pytest.raises(NatsError):
            await publisher.publish(f"{unique}.big", too_big, {}, timeout=2)
    ack = await publisher.publish(f"{unique}.ok", b"{}", {"Nats-Msg-Id": "one"}, timeout=5)
    assert ack.stream == f"S{unique}" and ack.seq == 1
    assert publisher.pending == 0


async def test_an_ack_that_never_comes_times_out_and_frees_the_slot(
    nc: Client, unique: str
) -> None:
    publisher = AckedPublisher(nc, max_pending=1)
    for _ in range(3):  # no stream captures it: the server says "no responders"
        with pytest.raises(NatsError):
            await publisher.publish(f"{unique}.nowhere", b"{}", {}, timeout=2)
    assert publisher.pending == 0


@pytest.mark.parametrize(
    ("subject", "headers", "why"),
    [
        ("a." + "x" * MAX_SUBJECT_BYTES, {}, "over the limit"),
        ("a.b c", {}, "whitespace"),
        ("a..b", {}, "empty token"),
        ("a.*", {}, "wildcard"),
        ("a.\udcff", {}, "not valid UTF-8"),
        ("a.b", {"Nats-Msg-Id": "x\r\nPUB evil 0"}, "cannot be sent"),
        ("a.b", {"Bad Key": "x"}, "cannot be sent"),
    ],
)
def test_what_the_server_would_refuse_is_refused_before_sending(
    subject: str, headers: dict[str, str], why: str
) -> None:
    with pytest.raises(Unpublishable, match=why):
        check_message(subject, b"{}", headers, 1024 * 1024)


def test_headers_count_against_max_payload() -> None:
    check_message("a.b", b"x" * 1000, {}, 1000)
    with pytest.raises(Unpublishable, match="over the server's max_payload"):
        check_message("a.b", b"x" * 990, {"Nats-Msg-Id": "0123456789"}, 1000)


async def test_a_state_write_too_big_for_the_server_keeps_the_connection(
    nats_server: NatsServer, nc: Client, unique: str
) -> None:
    """Under max_payload by itself, over it with the write's headers: the server would
    answer -ERR and close the connection (the daemon exited 1, a crash loop)."""
    store = await KVStore.open(nc.jetstream(), f"B{unique}", ttl=60)
    value = b"x" * (nc.max_payload - 10)
    with pytest.raises(Unpublishable):
        await store.create("big", value)
    with pytest.raises(Unpublishable):
        await store.put("big", value)
    assert nc.is_connected
    assert await store.create("small", b"1") >= 1


async def test_writes_failing_for_long_make_the_publisher_stalled(nc: Client, unique: str) -> None:
    """/readyz asks this: a daemon whose every write fails cannot finish any event."""
    publisher = AckedPublisher(nc)
    with pytest.raises(NatsError):
        await publisher.publish(f"{unique}.nowhere", b"{}", {}, timeout=2)
    later = time.monotonic() + STALLED_AFTER + 1
    assert not publisher.stalled() and publisher.stalled(now=later)
    with pytest.raises(NatsError):  # still failing: the first failure still counts
        await publisher.publish(f"{unique}.nowhere", b"{}", {}, timeout=2)
    assert publisher.stalled(now=later)
    await nc.jetstream().add_stream(StreamConfig(name=f"S{unique}", subjects=[f"{unique}.>"]))
    await publisher.publish(f"{unique}.ok", b"{}", {}, timeout=5)
    assert not publisher.stalled(now=later)
