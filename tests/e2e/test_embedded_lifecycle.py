"""The embedded server's life beside the daemon's, measured from outside (issue 22 c):
Ctrl-C with a step in flight, a second `run` in the same directory, a taken `--http`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from tests.support.collect import stored
from tests.support.daemon import DaemonProcess, free_port
from tests.support.http_target import HttpTarget
from tests.support.poll import until

SLOW_RULE = """
rules:
  - name: slow-step
    on: [slow.alert]
    actions:
      - name: call
        http: {{method: POST, url: "{url}/fix"}}
        timeout: 20s
"""


def embedded(
    workdir: Path, port: int, new_session: bool = False, http_port: int | None = None
) -> DaemonProcess:
    args = ["--rules", "rules", "--embedded-port", str(port)]
    process = DaemonProcess(args, workdir, new_session=new_session)
    process.http_port = http_port or process.http_port
    return process


async def test_ctrl_c_lets_the_step_finish_on_the_embedded_server(
    workdir: Path, http_target: HttpTarget
) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C) used to kill the embedded
    nats-server at once: 30 s of connection errors, exit 1, and the step ran again after
    a restart. The server must outlive the drain."""
    (workdir / "rules" / "slow.yaml").write_text(SLOW_RULE.format(url=http_target.url))
    http_target.then(200, delay=3)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    proc = embedded(workdir, port, new_session=True).start(timeout=60)
    try:
        nc = await nats.connect(url)
        await nc.jetstream().publish("slow.alert", b'{"n": 1}', headers={"Nats-Msg-Id": "e-1"})
        await nc.close()
        await http_target.wait_for(1)
        proc.interrupt()
        code = await asyncio.to_thread(proc.wait, 60)
    finally:
        proc.stop()
    logs = proc.logs()
    assert code == 0, logs
    assert "Traceback" not in logs
    restarted = embedded(workdir, port).start(timeout=60)
    try:
        nc = await nats.connect(url)
        try:
            results = await stored(nc, "remediator.results.slow-step")
            info = await nc.jetstream().consumer_info("ALERTS", "remediator")
        finally:
            await nc.close()
    finally:
        assert restarted.stop() == 0
    assert [r["status"] for r in results] == ["succeeded"]
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert len(http_target.received) == 1


async def test_a_second_run_in_the_same_directory_refuses_at_once(workdir: Path) -> None:
    """It used to start a second nats-server on the first one's store (which then
    rebuilt its streams) when its port was free, and to fail on the port otherwise.
    The `--http` address is the first one's too, as when both take the default: the
    data directory is what the refusal names."""
    (workdir / "rules" / "slow.yaml").write_text(SLOW_RULE.format(url="http://127.0.0.1:9"))
    first = embedded(workdir, free_port()).start(timeout=60)
    try:
        second = embedded(workdir, free_port(), http_port=first.http_port)
        second.start(wait_ready=False)
        try:
            code = await asyncio.to_thread(second.wait, 30)
        finally:
            second.stop()
        assert first.get("/readyz")[0] == 200
    finally:
        assert first.stop() == 0
    assert code == 2
    assert second.logs().splitlines() == [
        "remediator: another remediator is using .remediator/; pass --nats or --data-dir"
    ]


async def test_a_taken_http_port_is_one_line_and_exit_2(workdir: Path) -> None:
    (workdir / "rules" / "slow.yaml").write_text(SLOW_RULE.format(url="http://127.0.0.1:9"))
    first = embedded(workdir, free_port()).start(timeout=60)
    try:
        other = workdir / "other"
        (other / "rules").mkdir(parents=True)
        (other / "rules" / "slow.yaml").write_text((workdir / "rules" / "slow.yaml").read_text())
        taken = DaemonProcess(
            ["--rules", "rules", "--embedded-port", str(free_port())],
            other,
            http_port=first.http_port,
        ).start(wait_ready=False)
        try:
            code = await asyncio.to_thread(taken.wait, 30)
        finally:
            taken.stop()
    finally:
        assert first.stop() == 0
    assert code == 2
    assert taken.logs().splitlines() == [
        f"remediator: cannot listen on 127.0.0.1:{first.http_port} (--http): Address already in use"
    ]


async def test_a_daemon_killed_outright_takes_its_embedded_server_with_it(
    workdir: Path,
) -> None:
    """The server runs in its own session (for Ctrl-C's drain), so a SIGKILLed daemon
    used to leave it running: the port and the store taken, the next start refused."""
    (workdir / "rules" / "slow.yaml").write_text(SLOW_RULE.format(url="http://127.0.0.1:9"))
    port = free_port()
    proc = embedded(workdir, port).start(timeout=60)
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        await nc.close()
        proc.kill()

        async def server_gone() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:  # refused: nothing listens there any more
                return True
            writer.close()
            await writer.wait_closed()
            return False

        await until(server_gone, 20, "the embedded server gone with its daemon")
    finally:
        proc.stop()
    restarted = embedded(workdir, port).start(timeout=60)  # the store is free again
    assert restarted.stop() == 0
