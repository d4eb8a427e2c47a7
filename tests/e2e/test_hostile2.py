"""Hostile input, round two (issue 24), the NATS-level half: whatever the server delivers
the consume loop lives; no message ends without a trace; every write is checked before it
is sent; the sweep and status leave no consumers behind.

Each test publishes what a hostile publisher would, at the protocol level where nats-py
would refuse it (tests/support/rawnats.py), against a real nats-server and a real daemon
subprocess. bench/redteam.py runs the same cases, longer, from the command line.
"""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from tests.e2e.test_hostile import echo_rule, start
from tests.support.collect import Collector, stored_until
from tests.support.nats import NatsServer
from tests.support.rawnats import raw_publish


async def test_a_subject_that_is_not_utf8_is_dead_lettered_and_consuming_goes_on(
    nc: Client, nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    results = await Collector.on(nc, f"remediator.results.echo-{unique}")
    proc = start(workdir, nats_server.url, unique, echo_rule(unique))
    try:
        await raw_publish(nats_server.url, f"{unique}.ev.".encode() + b"\xff\xfe", b"hi")
        await nc.jetstream().publish(f"{unique}.ev.plain", b'{"plain": true}')
        await results.wait_for(1)  # delivered after the bad one: the loop lived
        bad = f"{unique}.ev.\\xff\\xfe"
        found = await stored_until(
            nc, "remediator.deadletter", lambda ds: any(d["subject"] == bad for d in ds)
        )
        (letter,) = [d for d in found if d["subject"] == bad]
        assert letter["reason"] == "invalid_subject" and letter["data"] == "hi"
        assert proc.get("/healthz")[0] == 200 and proc.get("/readyz")[0] == 200
        metrics = proc.get("/metrics")[1]
        assert 'remediator_dead_letters_total{reason="invalid_subject"} 1.0' in metrics
    finally:
        assert proc.stop() == 0
