"""Dry runs end to end: `--dry-run` for the daemon and `dry_run: true` for one rule.

The daemon is configured so that a real run would reach a real HTTP server, a real
OpenSSH sshd and the fake Kubernetes API. In a dry run none of them may see a single
request (for SSH: not even a TCP connection), while the result event carries every
rendered request, secrets masked, and later steps' `results.*` as placeholders.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.http_target import HttpTarget
from tests.support.kube_api import FakeKubeAPI, KubePKI
from tests.support.nats import NatsServer
from tests.support.sshd import SSHD, running_sshd

RULE = """
rules:
  - name: fix-@U@
    on: [@U@.alert]
    dry_run: @RULE_DRY_RUN@
    actions:
      - name: call
        http:
          method: POST
          url: "@HTTP@/hooks/{{ event.service }}"
          headers: {Authorization: "Bearer {{ secret('TOKEN') }}"}
          json: {text: "restarting {{ event.service }}"}
      - name: restart
        ssh:
          host: 127.0.0.1
          port: @SSH_PORT@
          user: @USER@
          script: |
            systemctl restart "$1"
          args: ["{{ event.service }}", "{{ secret('TOKEN') }}"]
      - name: scale
        scale: {namespace: default, deployment: "{{ event.service }}", step: 2, max_replicas: 10}
      - name: report
        http: {url: "@HTTP@/done", json: {replicas: "{{ results.scale.to }}"}}
      - name: rollout
        kubernetes: {restart: {namespace: default, deployment: "{{ event.service }}"}}
"""


@dataclass
class SSHTarget:
    port: int
    connections: Callable[[], int]
    settings: dict[str, object]


@contextlib.contextmanager
def ssh_target(directory: Path) -> Iterator[SSHTarget]:
    """The real sshd when installed; else a listening socket that counts connections."""
    if SSHD.is_file():
        with running_sshd(directory) as server:
            settings = {
                "known_hosts": str(server.known_hosts),
                "client_keys": [str(server.client_key)],
                "user": server.user,
            }
            yield SSHTarget(
                server.port, lambda: server.log_text().count("Connection from"), settings
            )
        return
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)

        def accepted() -> int:
            count = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    listener.accept()[0].close()
                    count += 1
            return count

        yield SSHTarget(listener.getsockname()[1], accepted, {})


@pytest.mark.parametrize("mode", ["--dry-run", "dry_run: true"])
async def test_dry_run_sends_nothing_and_reports_rendered_requests(
    mode: str,
    nc: Client,
    nats_server: NatsServer,
    workdir: Path,
    unique: str,
    http_target: HttpTarget,
) -> None:
    pki = KubePKI.generate(workdir)
    secret = f"tok-{unique}-s3cret"
    async with FakeKubeAPI(pki) as kube:
        kube.add_deployment("web", 3)
        with ssh_target(workdir) as ssh:
            rule = (
                RULE.replace("@U@", unique)
                .replace("@HTTP@", http_target.url)
                .replace("@SSH_PORT@", str(ssh.port))
                .replace("@USER@", getpass.getuser())
                .replace("@RULE_DRY_RUN@", "true" if mode == "dry_run: true" else "false")
            )
            (workdir / "rules" / "fix.yaml").write_text(rule)
            config = {
                "kubernetes": {"api": kube.url, "token": kube.token, "ca": str(pki.ca_cert)},
                "ssh": ssh.settings,
            }
            (workdir / "config.yaml").write_text(json.dumps(config))
            args = ["--rules", "rules", "--nats", nats_server.url, "--config", "config.yaml"]
            args += ["--stream", f"S{unique}", "--durable", f"D{unique}"]
            args += ["--dry-run"] if mode == "--dry-run" else []
            results = await Collector.on(nc, f"remediator.results.fix-{unique}")
            proc = DaemonProcess(args, workdir, env={"TOKEN": secret}).start()
            try:
                await nc.jetstream().publish(f"{unique}.alert", b'{"service": "web"}')
                (result,) = await results.wait_for(1)
            finally:
                assert proc.stop() == 0
            ssh_connections = ssh.connections()

    assert http_target.received == []
    assert kube.requests == []
    assert ssh_connections == 0
    assert kube.replicas("web") == 3
    assert result["status"] == "dry_run"
    steps = {step["name"]: step for step in result["steps"]}
    assert [s["status"] for s in steps.values()] == ["dry_run"] * 5
    assert steps["call"]["output"] == {
        "method": "POST",
        "url": f"{http_target.url}/hooks/web",
        "headers": {"Authorization": "Bearer ***"},
        "json": {"text": "restarting web"},
    }
    assert steps["restart"]["output"]["args"] == ["web", "***"]
    assert steps["restart"]["output"]["script"] == 'systemctl restart "$1"\n'
    assert steps["scale"]["output"] == {
        "namespace": "default",
        "deployment": "web",
        "step": 2,
        "max_replicas": 10,
    }
    assert steps["report"]["output"]["json"] == {"replicas": "<results.scale.to>"}
    rollout = steps["rollout"]["output"]  # the request a kubernetes step would send
    assert rollout["restart"] == {"namespace": "default", "deployment": "web"}
    assert (rollout["method"], rollout["path"]) == (
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
    )
    assert rollout["content_type"] == "application/strategic-merge-patch+json"
    template = rollout["body"]["spec"]["template"]
    assert list(template["metadata"]["annotations"]) == ["kubectl.kubernetes.io/restartedAt"]
    assert secret not in results.messages[0].data.decode()
    assert secret not in proc.logs()
