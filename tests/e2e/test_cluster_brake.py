"""`--replicas` reaches every stream and bucket, and the brake works while a node is down
(SPEC §13, §10).

A fresh three-node cluster (tests/support/cluster.py), one daemon with
`--replicas 3`: every stream on the cluster, whatever its name, has three
replicas, the control bucket's included. Then each node in turn is killed and
`pause`, `status` and `resume` run on the command line as an operator would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import cli
from tests.support.cluster import NAMES, Cluster, connect
from tests.support.daemon import DaemonProcess
from tests.support.poll import until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

RULE = """
rules:
  - name: r{unique}
    on: [{unique}.alerts.>]
    actions:
      - name: call
        http: {{method: POST, url: "http://127.0.0.1:9/"}}
"""


async def replica_counts(cluster: Cluster) -> dict[str, int]:
    nc = await connect(cluster)
    try:
        return {
            info.config.name: int(info.config.num_replicas or 1)
            for info in await nc.jetstream().streams_info()
        }
    finally:
        await nc.close()


async def test_every_stream_is_replicated_and_the_brake_works_with_a_node_down(
    cluster: Cluster, workdir: Path, unique: str
) -> None:
    (workdir / "rules" / "r.yaml").write_text(RULE.format(unique=unique))
    args = ["--rules", "rules", "--nats", cluster.urls, "--replicas", "3"]
    daemon = DaemonProcess([*args, "--stream", f"S{unique}"], workdir).start()
    try:
        counts = await replica_counts(cluster)
        # Every stream the daemon made, whatever its name (buckets are streams too).
        assert {"KV_REMEDIATOR_CONTROL", "KV_REMEDIATOR_STATE", f"S{unique}"} <= set(counts)
        assert counts == dict.fromkeys(counts, 3), counts
    finally:
        daemon.stop()
    for name in NAMES:
        cluster.kill(name)
        try:
            await _brake_works(cluster, f"r{unique}", name)
        finally:
            cluster.restart(name)
        await cluster.wait_jetstream()


async def _brake_works(cluster: Cluster, rule: str, down: str) -> None:
    code, out, err = await cli(cluster.urls, "pause", rule, "--reason", f"{down} down")
    assert code == 0, f"pause with {down} down: {err}"
    code, out, err = await cli(cluster.urls, "status", "--json")
    assert code == 0, f"status with {down} down: {err}"
    assert [p["scope"] for p in json.loads(out)["pauses"]] == [rule], out
    code, out, err = await cli(cluster.urls, "resume", rule)
    assert code == 0 and f"resumed rule {rule}" in out, f"resume with {down} down: {err}"

    async def lifted() -> bool:
        code, out, _ = await cli(cluster.urls, "status", "--json")
        return code == 0 and not json.loads(out)["pauses"]

    await until(lifted, 30, "the pause lifted")
