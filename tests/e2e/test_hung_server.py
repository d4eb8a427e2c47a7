"""A hung nats-server is noticed within seconds, not minutes (SPEC §7, §13).

The daemon's own server is frozen (SIGSTOP): the client's pings go
unanswered, so `/readyz` turns 503 within a few ping intervals (nats-py's
default of two minutes would keep it 200 all along); after SIGCONT the
client is back and `/readyz` says 200 again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

pytestmark = pytest.mark.timeout(120)

PING = 1.0  # seconds: --ping-interval, so the test is short


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path / "nats").start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)  # a frozen server cannot be stopped
    server.stop()


async def test_readyz_fails_while_the_server_is_frozen(
    own_server: NatsServer, workdir: Path, unique: str
) -> None:
    (workdir / "rules" / "r.yaml").write_text(
        f"rules:\n  - name: r\n    on: [{unique}.a]\n    actions: [{{publish: {{subject: x}}}}]\n"
    )
    args = ["--rules", "rules", "--nats", own_server.url, "--stream", f"S{unique}"]
    daemon = DaemonProcess([*args, "--ping-interval", f"{PING}s"], workdir).start()
    assert own_server.process is not None
    try:
        own_server.process.send_signal(signal.SIGSTOP)
        try:
            # Two unanswered pings: stale; the deadline is generous for a loaded machine.
            await until(lambda: daemon.get("/readyz")[0] == 503, 20 * PING, "503 while hung")
        finally:
            own_server.process.send_signal(signal.SIGCONT)
        await until(lambda: daemon.get("/readyz")[0] == 200, 30, "200 once it answers")
    finally:
        daemon.stop()
