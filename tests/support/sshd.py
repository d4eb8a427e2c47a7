"""A real OpenSSH `sshd` for tests: its own host key, client key and known_hosts, on loopback.

`running_sshd(directory)` starts `/usr/sbin/sshd -D -e` on a free 127.0.0.1 port with keys
generated into `directory`, waits (polling with a deadline) until it logs that it listens,
and stops it by its own pid on exit. The log is kept so tests can count what the server saw.
Without sshd the tests are skipped, unless `REMEDIATOR_REQUIRE_SSHD=1` makes that a failure.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from remediator.actions.sshsettings import SSHSettings

SSHD = Path("/usr/sbin/sshd")
REQUIRE_ENV = "REMEDIATOR_REQUIRE_SSHD"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start as root without it
HOST = "127.0.0.1"
START_DEADLINE = 10.0
STOP_DEADLINE = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHServer:
    """What a test needs to reach the running sshd, and to read what it logged."""

    host: str
    port: int
    user: str
    client_key: Path
    host_key: Path  # the server's public host key
    known_hosts: Path
    log_path: Path
    directory: Path

    def settings(self, **overrides: object) -> SSHSettings:
        """Client settings that trust this server and log in with its authorized key."""
        base = SSHSettings(
            known_hosts=self.known_hosts,
            client_keys=(self.client_key,),
            user=self.user,
            connect_timeout=5.0,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def accepted_logins(self) -> int:
        """How many connections have authenticated so far (one per TCP connection)."""
        return self.log_text().count("Accepted publickey for ")


def require_sshd() -> Path:
    """The sshd binary, or skip the test (fail when the environment requires sshd)."""
    if SSHD.is_file() and os.access(SSHD, os.X_OK):
        return SSHD
    reason = f"OpenSSH server not installed at {SSHD}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(reason)


def wait_until(predicate: Callable[[], bool], *, deadline: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `deadline` seconds pass; return its last value."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() >= end:
            return predicate()
        time.sleep(interval)
    return True


def generate_key(path: Path, comment: str = "remediator-test") -> Path:
    """A fresh passphrase-less ed25519 key pair at `path` (and `path`.pub)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path


def known_hosts_line(port: int, public_key: Path) -> str:
    """A known_hosts entry for the loopback server on a non-default port."""
    key_type, key_data = public_key.read_text().split()[:2]
    return f"[{HOST}]:{port} {key_type} {key_data}\n"


@contextlib.contextmanager
def running_sshd(directory: Path) -> Iterator[SSHServer]:
    """Start sshd with keys under `directory`; stop it (by pid) when the block ends."""
    sshd = require_sshd()
    _ensure_privsep_dir()
    host_key = generate_key(directory / "host_ed25519", "remediator-test-host")
    client_key = generate_key(directory / "client_ed25519", "remediator-test-client")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    process, port = _start(sshd, directory, host_key, authorized)
    try:
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(known_hosts_line(port, host_key.with_suffix(".pub")))
        yield SSHServer(
            host=HOST,
            port=port,
            user=getpass.getuser(),
            client_key=client_key,
            host_key=host_key.with_suffix(".pub"),
            known_hosts=known_hosts,
            log_path=directory / "sshd.log",
            directory=directory,
        )
    finally:
        _stop(process)


@contextlib.contextmanager
def running_agent(directory: Path, key: Path) -> Iterator[Path]:
    """An ssh-agent holding `key`, listening on a socket in `directory`; stopped by pid."""
    socket_path = directory / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until(socket_path.exists, deadline=START_DEADLINE):
            raise RuntimeError("ssh-agent did not create its socket")
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(socket_path)},
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        yield socket_path
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def _ensure_privsep_dir() -> None:
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def _start(
    sshd: Path, directory: Path, host_key: Path, authorized: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start sshd on a free port; pick another if someone took the port in between."""
    for _ in range(3):
        port = _free_port()
        config = _write_config(directory, port, host_key, authorized)
        log_path = directory / "sshd.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(sshd), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_listening(process, log_path, port):
            return process, port
        log_text = log_path.read_text(errors="replace")
        _stop(process)
        if "Address already in use" not in log_text:
            raise RuntimeError(f"sshd did not start on port {port}:\n{log_text}")
    raise RuntimeError("sshd found no free port in 3 tries")


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path, port: int) -> bool:
    listening = f"Server listening on {HOST} port {port}"
    wait_until(
        lambda: process.poll() is not None or listening in log_path.read_text(),
        deadline=START_DEADLINE,
    )
    return process.poll() is None and listening in log_path.read_text()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _write_config(directory: Path, port: int, host_key: Path, authorized: Path) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {HOST}:{port}",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "MaxStartups 100",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    return config


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate sshd and the per-connection children it forked, each by its own pid."""
    children = _children(process.pid)
    for pid in [process.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in children:
        if not wait_until(functools.partial(_gone, pid), deadline=STOP_DEADLINE):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie left for an absent reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"
