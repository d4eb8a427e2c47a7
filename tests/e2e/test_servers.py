"""Server lists, replica counts and a quiet shutdown (SPEC §13, §6)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from nats.aio.client import Client

from remediator.nats.connection import connect
from remediator.nats.kvstore import KVStore
from remediator.nats.transport import Transport
from remediator.settings import Settings
from tests.support.daemon import DaemonProcess, free_port
from tests.support.nats import NatsServer

RULE = """
rules:
  - name: r{unique}
    on: [{unique}.alerts.>]
    actions:
      - name: note
        publish: {{subject: "{unique}.out", data: "x"}}
"""


def test_server_lists_from_flags_variables_and_the_file(tmp_path: Path) -> None:
    urls = "nats://a:4222,nats://b:4222"
    assert Settings.load({"nats_url": urls}, {}).nats_url == urls
    assert (
        Settings.load({}, {"REMEDIATOR_NATS_URL": " nats://a:4222 , nats://b:4222"}).nats_url
        == urls
    )
    config = tmp_path / "c.yaml"
    config.write_text("nats: {url: [nats://a:4222, nats://b:4222]}\nreplicas: 3\n")
    loaded = Settings.load({"config": str(config)}, {})
    assert (loaded.nats_url, loaded.replicas) == (urls, 3)
    assert Settings.load({}, {}).replicas == 1


async def test_starts_while_a_listed_server_is_down_and_stops_without_a_warning(
    nats_server: NatsServer, workdir: Path, unique: str
) -> None:
    (workdir / "rules" / "r.yaml").write_text(RULE.format(unique=unique))
    down = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--rules", "rules", "--nats", f"{down},{nats_server.url}"]
    args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
    daemon = DaemonProcess(args, workdir).start()
    assert daemon.stop() == 0
    records = daemon.log_records()
    (stop,) = [i for i, r in enumerate(records) if str(r["message"]).startswith("stopping")]
    # The down server is worth a warning at start-up; the shutdown is worth none.
    shutdown = records[stop:]
    assert [r["message"] for r in shutdown if r["level"] != "info"] == []
    assert shutdown[-1]["message"] == "nats: connection closed"


async def test_an_existing_stream_with_other_replicas_is_reported_not_changed(
    nats_server: NatsServer, nc: Client, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    await js.add_stream(name=f"S{unique}", subjects=[f"{unique}.alerts.>"], num_replicas=1)
    settings = Settings(nats_url=nats_server.url, stream=f"S{unique}", durable=f"D{unique}")
    wanted = Settings(**{**_fields(settings), "replicas": 3})
    transport = Transport(await connect(wanted, nats_server.url), wanted)
    try:
        await Transport(transport.nc, settings).prepare({f"{unique}.alerts.x"})  # R1 results
        with caplog.at_level(logging.WARNING):
            await transport.prepare({f"{unique}.alerts.x"})
            await KVStore.open(transport.js, f"B{unique}", ttl=60, replicas=1)
            await KVStore.open(transport.js, f"B{unique}", ttl=60, replicas=3)
    finally:
        await transport.close()
    info = await js.stream_info(f"S{unique}")
    assert info.config.num_replicas == 1
    said = caplog.text
    assert f"stream S{unique} has 1 replica(s), --replicas asks for 3" in said
    assert f"stream KV_B{unique} has 1 replica(s), --replicas asks for 3" in said


def _fields(settings: Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
