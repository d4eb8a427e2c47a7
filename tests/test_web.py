"""The HTTP listener and the Alertmanager webhook, in process, against a real nats-server.

The listener's aiohttp app is served on a loopback port (aiohttp's TestServer)
and publishes through a real `Transport`, so acks, JetStream deduplication
and a server going away are the real thing.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from remediator.http.listener import Listener
from remediator.http.webhook import PATH, AlertmanagerBridge, compile_subject
from remediator.nats.connection import connect, connection_secrets
from remediator.nats.transport import Transport
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates
from remediator.settings import Settings
from tests.support.nats import NatsServer
from tests.support.poll import until

DATA = Path(__file__).parent / "data" / "alertmanager"
FIRING = (DATA / "alertmanager-0.25-firing.json").read_bytes()
RESOLVED = (DATA / "alertmanager-0.25-resolved.json").read_bytes()
TOKEN = "hook-s3cret"
Client_ = TestClient[web.Request, web.Application]


def body(**changes: object) -> bytes:
    group = json.loads(FIRING)
    group.update(changes)
    return json.dumps(group).encode()


def alert(**changes: object) -> dict[str, object]:
    first = dict(json.loads(FIRING)["alerts"][0])
    first.update(changes)
    return first


@asynccontextmanager
async def serve(
    transport: Transport, subject: str, token: str | None = None, body_timeout: float = 10.0
) -> AsyncIterator[Client_]:
    listener = Listener(CollectorRegistry(), lambda: True)
    template = compile_subject(Templates(Secrets({})), subject)
    bridge = AlertmanagerBridge(transport, template, token, lambda: "generated", body_timeout)
    listener.add_webhook(bridge)
    # Alertmanager posts JSON: every request here says so unless a test says otherwise.
    json_type = {"Content-Type": "application/json"}
    async with TestClient(TestServer(listener.app), headers=json_type) as client:
        yield client


@pytest.fixture
async def transport(nats_server: NatsServer, unique: str) -> AsyncIterator[Transport]:
    settings = Settings(stream=f"S{unique}", durable=f"D{unique}")
    transport = Transport(await connect(settings, nats_server.url), settings)
    yield transport
    await transport.close()


@pytest.fixture
async def client(transport: Transport, nc: Client, unique: str) -> AsyncIterator[Client_]:
    """A webhook publishing to `<unique>.alerts.<alertname>`, captured by a stream."""
    await nc.jetstream().add_stream(name=f"S{unique}", subjects=[f"{unique}.alerts.>"])
    async with serve(transport, f"{unique}.alerts.{{{{ alert.labels.alertname }}}}") as client:
        yield client


async def stored(nc: Client, unique: str) -> list[tuple[dict[str, str], dict[str, object]]]:
    js = nc.jetstream()
    count = (await js.stream_info(f"S{unique}")).state.messages
    found = []
    for seq in range(1, count + 1):
        msg = await js.get_msg(f"S{unique}", seq)
        found.append((dict(msg.headers or {}), json.loads(msg.data)))
    return found


async def message(response: ClientResponse) -> str:
    return str((await response.json())["message"])


async def test_each_alert_becomes_one_event_and_repeats_are_stored_once(
    client: Client_, nc: Client, unique: str
) -> None:
    first = await client.post(PATH, data=FIRING)
    again = await client.post(PATH, data=FIRING)
    resolved = await client.post(PATH, data=RESOLVED)

    assert [first.status, again.status, resolved.status] == [200, 200, 200]
    (fired_headers, fired), (resolved_headers, cleared) = await stored(nc, unique)
    assert fired == {
        "status": "firing",
        "labels": {
            "alertname": "HighCPU",
            "host": "web-1",
            "instance": "127.0.0.1:19100",
            "job": "fake",
            "severity": "critical",
        },
        "annotations": {"remediation": "restart-web", "summary": "CPU usage on web-1 is 97%"},
        "startsAt": "2026-11-29T13:09:27.119Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:19090/graph?g0.expr=fake_cpu_usage+%3E+90&g0.tab=1",
        "fingerprint": "99e23bf2b740734b",
        "receiver": "webhook",
        "externalURL": "http://127.0.0.1:19093",
        "groupKey": '{}:{alertname="HighCPU"}',
    }
    assert fired_headers["Nats-Msg-Id"] == "99e23bf2b740734b:firing:2026-11-29T13:09:27.119Z"
    assert resolved_headers["Nats-Msg-Id"] == "99e23bf2b740734b:resolved:2026-11-29T13:09:27.119Z"
    assert fired_headers["trace-id"] == "generated"
    assert cleared["status"] == "resolved" and cleared["endsAt"] == "2026-11-29T13:09:29.119Z"


async def test_several_alerts_unknown_fields_and_a_trace_header(
    client: Client_, nc: Client, unique: str
) -> None:
    alerts = [
        alert(notification_reason="new", routeLabels={"team": "web"}),
        alert(labels={"alertname": "DiskFull"}, fingerprint="f2"),
        alert(labels={"alertname": "NoPrint"}, fingerprint=None),  # Alertmanager < 0.20
    ]
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    response = await client.post(
        PATH, data=body(alerts=alerts, extra={"x": 1}), headers={"traceparent": traceparent}
    )

    assert response.status == 200, await message(response)
    events = {str(data["labels"]["alertname"]): (h, data) for h, data in await stored(nc, unique)}  # type: ignore[index]
    assert set(events) == {"HighCPU", "DiskFull", "NoPrint"}
    assert "notification_reason" not in events["HighCPU"][1]
    assert "routeLabels" not in events["HighCPU"][1]
    assert events["DiskFull"][0]["Nats-Msg-Id"].startswith("f2:firing:")
    derived = events["NoPrint"][1]["fingerprint"]
    assert isinstance(derived, str) and len(derived) == 16
    assert {headers["trace-id"] for headers, _ in events.values()} == {
        "4bf92f3577b34da6a3ce929d0e0e4736"
    }


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"not json {", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (body(version="3"), "version '3'"),
        (body(alerts=None), "alerts is missing"),
        (body(alerts={"a": 1}), "not a list"),
        (body(alerts=[alert(), "x"]), "alerts[1] is not an object"),
        (body(alerts=[alert(labels=None)]), "alerts[0].labels"),
        (body(alerts=[alert(labels={"job": "x"})]), "alerts[0].labels.alertname is missing"),
        (body(alerts=[alert(status="pending")]), "firing or resolved"),
        (body(alerts=[alert(startsAt=None)]), "startsAt is missing"),
        (body(alerts=[alert(labels={"alertname": "High CPU"})]), "not a valid NATS subject"),
        (body(alerts=[alert(labels={"alertname": "a.>"})]), "not a valid NATS subject"),
        # Python reads NaN and Infinity (and 1e400 as Infinity); strict consumers do not.
        (body(alerts=[alert(annotations={"v": float("nan")})]), "NaN is not JSON"),
        (body(alerts=[alert(annotations={"v": float("-inf")})]), "-Infinity is not JSON"),
        (body(alerts=[alert(value="X")]).replace(b'"X"', b"1e400"), "too large"),
        (body(alerts=[alert(labels={"alertname": "A" * 4100})]), "over the limit"),
    ],
)
async def test_malformed_bodies_are_refused_with_a_message_and_nothing_published(
    client: Client_, nc: Client, unique: str, data: bytes, complaint: str
) -> None:
    response = await client.post(PATH, data=data)

    assert response.status == 400
    assert complaint in await message(response)
    assert await stored(nc, unique) == []


async def test_oversize_bodies_are_refused(client: Client_, nc: Client, unique: str) -> None:
    oversize = body(padding="x" * (1024 * 1024))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for start in range(0, len(oversize), 64 * 1024):
            yield oversize[start : start + 64 * 1024]

    declared = await client.post(PATH, data=io.BytesIO(oversize))
    streamed = await client.post(PATH, data=chunks())

    assert [declared.status, streamed.status] == [413, 413]
    assert await stored(nc, unique) == []


async def test_bearer_token_is_required_when_configured(
    transport: Transport, nc: Client, unique: str
) -> None:
    await nc.jetstream().add_stream(name=f"S{unique}", subjects=[f"{unique}.>"])
    async with serve(transport, f"{unique}.am", token=TOKEN) as client:
        missing = await client.post(PATH, data=FIRING)
        wrong = await client.post(PATH, data=FIRING, headers={"Authorization": "Bearer nope"})
        basic = await client.post(PATH, data=FIRING, headers={"Authorization": f"Basic {TOKEN}"})
        right = await client.post(PATH, data=FIRING, headers={"Authorization": f"Bearer {TOKEN}"})

    assert [missing.status, wrong.status, basic.status, right.status] == [401, 401, 401, 200]
    assert len(await stored(nc, unique)) == 1


async def test_unreachable_nats_answers_503_so_alertmanager_retries(
    tmp_path: Path, unique: str
) -> None:
    server = NatsServer(store=tmp_path / "nats").start()
    settings = Settings(stream=f"S{unique}")
    transport = Transport(await connect(settings, server.url), settings)
    try:
        async with serve(transport, "alerts.{{ alert.labels.alertname }}") as client:
            assert (await client.post(PATH, data=FIRING)).status == 200  # core NATS, flushed
            server.stop()
            await until(lambda: not transport.connected, 10, "the client sees the server gone")
            response = await client.post(PATH, data=FIRING)
            assert response.status == 503
            assert "unreachable" in await message(response)
    finally:
        server.stop()
        await transport.nc.close()


def test_default_subject_template_renders_alerts_dot_alertname() -> None:
    template = compile_subject(Templates(Secrets({})), Settings().webhook_subject)

    assert template.render({"alert": alert(), "group": {}}) == "alerts.HighCPU"


def test_connection_secrets_cover_url_credentials_and_settings() -> None:
    settings = Settings(nats_password="pw1", nats_token="tok1", nkey_seed="SUAB")

    assert connection_secrets(settings, "nats://bob:pw2@h:4222") == {"pw1", "tok1", "SUAB", "pw2"}
    assert connection_secrets(Settings(), "nats://tok3@h:4222") == {"tok3"}
    assert connection_secrets(Settings(), "nats://h:4222") == set()


async def test_a_client_too_slow_to_send_its_body_gets_408(transport: Transport) -> None:
    async with serve(transport, "x.{{ alert.labels.alertname }}", body_timeout=0.5) as client:
        server = client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        writer.close()
    assert b" 408 " in status_line


async def test_a_body_that_is_not_declared_json_gets_415(client: Client_) -> None:
    response = await client.post(PATH, data=FIRING, headers={"Content-Type": "text/plain"})
    assert response.status == 415
