"""A real three-node nats-server cluster with JetStream, on 127.0.0.1, for tests.

Nodes n1..n3 each get a config file, a JetStream store in a temporary
directory and fixed random ports (client and route), so a killed node
restarts where it was, with its data. Every process is stopped by its own
pid. `kill(name)` is a crash (SIGKILL); `restart(name)` brings it back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nats

from remediator.nats.embedded import server_binary
from tests.support.daemon import free_port
from tests.support.nats import stop_process

NAMES = ("n1", "n2", "n3")


@dataclass
class Node:
    name: str
    dir: Path
    port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    def config(self, routes: list[int]) -> str:
        route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
        return (
            f"server_name: {self.name}\n"
            f"server_tags: [{self.name}]\n"  # placement: a stream pinned to one node
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
            f"cluster {{ name: rc, listen: 127.0.0.1:{self.route_port}, "
            f"routes: [{route_urls}] }}\n"
        )

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(server_binary()), "-c", str(self.dir / "server.conf")],
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout)


@dataclass
class Cluster:
    root: Path
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes.values())

    def start(self, timeout: float = 30.0) -> Cluster:
        for name in NAMES:
            (self.root / name).mkdir(parents=True, exist_ok=True)
            self.nodes[name] = Node(name, self.root / name)
        try:
            for node in self.nodes.values():
                others = [n.route_port for n in self.nodes.values() if n is not node]
                (node.dir / "server.conf").write_text(node.config(others))
                node.start()
            # In a thread of its own: callable from a running event loop too.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, self.wait_jetstream(timeout)).result()
        except BaseException:
            self.stop()
            raise
        return self

    async def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has a JetStream meta leader (account info answers)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(
                    self.urls.split(","),
                    connect_timeout=1,
                    max_reconnect_attempts=1,
                    error_cb=quiet,
                )
                try:
                    await nc.jetstream().account_info()
                    return
                finally:
                    await nc.close()
            except Exception as exc:
                last = exc
            await asyncio.sleep(0.1)
        raise RuntimeError(f"cluster JetStream not ready in {timeout}s: {last}")

    def kill(self, name: str) -> None:
        self.nodes[name].kill()

    def restart(self, name: str) -> None:
        self.nodes[name].start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


# A rule calling the HTTP target once per event, at `/e/<event id>`: the target's log
# then counts the runs of each event (lost ones, and ones run twice).
CALL_PER_EVENT = """
rules:
  - name: {name}
    on: [{prefix}.alerts.>]
    actions:
      - name: call
        http: {{method: POST, url: "{url}/e/{{{{ event_id }}}}"}}
        timeout: 5s
"""


async def quiet(exc: Exception) -> None:
    """A down node refuses connections, a killed one moves its clients: expected here,
    not worth a traceback."""


async def connect(cluster: Cluster) -> nats.NATS:
    """A client to every node of `cluster`, quiet about nodes going down."""
    return await nats.connect(cluster.urls.split(","), error_cb=quiet)


async def leader(nc: nats.NATS, stream: str) -> str:
    """The node leading `stream` now (its Raft group's leader)."""
    info = await nc.jetstream().stream_info(stream)
    assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader"
    return str(info.cluster.leader)
