"""Seeded hostile messages at the protocol level, and the check that each one ends with a
result or a dead letter while the daemon keeps consuming (issue 24, item k).

`hostile_messages` yields (subject, headers, payload) as raw bytes: subjects that
are not UTF-8 or near the server's control-line limit, header blocks with
bytes that are not text, lines without a colon or huge values, payloads that
are not JSON, hold NaN, or nest deeply. `tests/e2e/test_hostile2.py` runs a
few seconds of it in CI; `scripts/redteam.py` runs it as long as asked.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from nats.aio.client import Client

from tests.support.collect import stored
from tests.support.poll import until
from tests.support.rawnats import pub_line, raw_send

DEAD_LETTERS = "remediator.deadletter"
Message = tuple[bytes, bytes, bytes]  # subject, header block ("" for none), payload

_TOKENS = [
    b"\xff\xfe",
    b"caf\xc3\xa9",
    b"\xc3",  # a UTF-8 sequence cut short
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"ok",
    b"\x01\x02",
    b"%s",
    b"{{7*7}}",
]
_HEADERS = [
    b"NATS/1.0\r\nX-Bad: \xff\xfe",
    b"NATS/1.0\r\nno colon here",
    b"NATS/1.0\r\nNats-Msg-Id: \xc3\x28",
    b"NATS/1.0\r\ntrace-id: " + b"t" * 2000,
    b"NATS/1.0\r\nX-A: 1\r\nX-A: 2",
    b"NATS/1.0\r\n: empty-key",
]
_PAYLOADS = [
    b"{}",
    b'{"value": NaN, "n": Infinity}',
    b"\xff\xfe\xfd",
    b"[" * 5000 + b"]" * 5000,
    b'{"labels": {"alertname": "' + "é".encode() * 1000 + b'"}}',
    b"",
    b'"just a string"',
    b'{"a": "\\ud800"}',
]


def hostile_messages(prefix: str, seed: int, count: int) -> Iterator[Message]:
    """`count` messages on `<prefix>.ev.>`, the same for the same seed."""
    rng = random.Random(seed)
    base = f"{prefix}.ev.".encode()
    for index in range(count):
        kind = index % 4
        if kind == 0:
            subject = base + rng.choice(_TOKENS) + b".%d" % index
        elif kind == 1:  # long: the delivered MSG line adds the $JS.ACK reply to it
            subject = base + b"L%d." % index + b"x" * rng.randint(3000, 4070 - len(base))
        else:
            subject = base + b"n%d" % index
        headers = rng.choice(_HEADERS) if kind >= 2 else b""
        yield subject, headers, rng.choice(_PAYLOADS)


async def publish_all(url: str, messages: Iterator[Message]) -> int:
    """Send every message on one raw connection; the number sent."""
    lines = [pub_line(subject, payload, headers) for subject, headers, payload in messages]
    answer = await raw_send(url, b"".join(lines))
    if b"-ERR" in answer:
        raise AssertionError(f"the server refused the hostile messages: {answer[-300:]!r}")
    return len(lines)


async def every_message_traced(
    nc: Client, stream: str, durable: str, prefix: str, results: str, timeout: float = 60
) -> tuple[int, int, int]:
    """Wait until the consumer has nothing pending or unacked; then (stored, results, dead
    letters), the last two counting this prefix's only. Each stored message must end as
    one or the other."""
    js = nc.jetstream()

    async def settled() -> bool:
        info = await js.consumer_info(stream, durable)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await until(settled, timeout, f"consumer {durable} settles")
    kept = (await js.stream_info(stream)).state.messages
    letters = [d for d in await stored(nc, DEAD_LETTERS) if str(d["subject"]).startswith(prefix)]
    return kept, len(await stored(nc, results)), len(letters)
