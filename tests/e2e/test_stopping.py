"""Starting through a leader election, and stopping within the drain timeout
(SPEC §5, §13).

Start-up that meets a JetStream without a leader (one node of three up, no
quorum) keeps trying, saying so, and is ready once the others are back. A
SIGTERM exits within `--drain-timeout` and a few seconds even when the server
cannot answer (frozen), with the control bucket's watcher open, as it always
is in JetStream mode: the connection's drain is bounded.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.daemon import DaemonProcess
from tests.support.nats import NatsServer
from tests.support.poll import until

pytestmark = pytest.mark.timeout(180)

DRAIN = 2.0  # seconds: --drain-timeout
EXIT_SLACK = 10.0  # seconds past the drain timeout a stop may take (a loaded machine)


def rules(workdir: Path, unique: str) -> None:
    (workdir / "rules" / "r.yaml").write_text(
        f"rules:\n  - name: r\n    on: [{unique}.a]\n    actions: [{{publish: {{subject: x}}}}]\n"
    )


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path / "nats").start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)  # a frozen server cannot be stopped
    server.stop()


@pytest.mark.cluster
async def test_start_up_waits_for_a_leader(tmp_path: Path, workdir: Path, unique: str) -> None:
    cluster = Cluster(tmp_path / "cluster").start()
    try:
        cluster.kill("n2")
        cluster.kill("n3")  # n1 alone: no quorum, so JetStream has no leader to answer
        rules(workdir, unique)
        args = ["--rules", "rules", "--nats", cluster.urls, "--replicas", "3"]
        daemon = DaemonProcess([*args, "--stream", f"S{unique}"], workdir).start(wait_ready=False)
        try:
            await until(lambda: "trying again" in daemon.logs(), 60, "start-up retrying")
            cluster.restart("n2")
            cluster.restart("n3")
            daemon.wait_ready(timeout=90)
        finally:
            daemon.stop()
    finally:
        cluster.stop()


async def test_sigterm_exits_in_time_while_the_server_is_frozen(
    own_server: NatsServer, workdir: Path, unique: str
) -> None:
    rules(workdir, unique)
    args = ["--rules", "rules", "--nats", own_server.url, "--stream", f"S{unique}"]
    daemon = DaemonProcess([*args, "--drain-timeout", f"{DRAIN}s"], workdir).start()
    assert own_server.process is not None
    try:
        own_server.process.send_signal(signal.SIGSTOP)
        daemon.signal(signal.SIGTERM)
        # A deadline, not a measurement: past it, the exit hung (30 s and more before).
        assert daemon.wait(timeout=DRAIN + EXIT_SLACK) == 0
    finally:
        own_server.process.send_signal(signal.SIGCONT)
        daemon.stop()
