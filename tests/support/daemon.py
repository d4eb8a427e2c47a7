"""`remediator run` as a subprocess, the way an operator starts it.

The daemon's stderr (JSON log lines) goes to a file the test can read; readiness
is awaited by polling `/readyz` with a deadline; the process is stopped by its
own pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaemonProcess:
    args: list[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Its own process group, as a shell gives a foreground job: Ctrl-C is then
    # `interrupt()`, a SIGINT to the whole group.
    new_session: bool = False

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> DaemonProcess:
        self.log_path = self.workdir / f"daemon-{time.monotonic_ns()}.log"
        command = [
            sys.executable,
            "-m",
            "remediator",
            "run",
            *self.args,
            "--http",
            f"127.0.0.1:{self.http_port}",
        ]
        env = {**os.environ, **self.env}
        env.pop("REMEDIATOR_NATS_URL", None) if "REMEDIATOR_NATS_URL" not in self.env else None
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=self.new_session,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=5
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:  # closed now, not when collected: an open socket warns in a later test
                return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.logs()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, object]]:
        records = []
        for line in self.logs().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to every process of the daemon's group."""
        assert self.process is not None and self.new_session
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = process
        return process.returncode

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
