"""SSH sessions: the pool that hands them out and the remote process that runs in one.

This module owns the mechanics under the `ssh` action: connections kept per (host, port,
user) and reused, a cap on concurrent sessions per host, idle connections closed after
`idle_timeout`, and the life of one remote process: feeding its stdin, collecting its
capped output and exit status and, when the engine's timeout cancels the step, killing
the process group it started on the remote host (found through the pid the command
announces with `ANNOUNCE_PGID`). How to connect, and whom to trust, is the caller's:
`remediator.actions.ssh` hands each session a connect function. asyncssh is imported
where it is first needed, not with this module, so a daemon without `ssh` steps never
pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from remediator.actions.base import OUTPUT_CAP
from remediator.errors import StepError

if TYPE_CHECKING:
    import asyncssh

_log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (host, port, user): sessions with one key share connections
Connect: TypeAlias = "Callable[[], Awaitable[asyncssh.SSHClientConnection]]"

# Each run can briefly hold two sessions (its own and the one that kills it); 5 per
# connection keeps that within OpenSSH's default MaxSessions of 10.
_SESSIONS_PER_CONNECTION = 5
_KILL_WAIT = 5.0  # bound on each clean-up wait after a cancellation
# The login shell announces its pid, which is its process group (sshd calls setsid for
# every session), on stderr before the step's command runs; a timeout kills that group.
# A remote command starts with ANNOUNCE_PGID so that a cancellation can kill it.
_PGID_MARK = b"remediator-pgid="
ANNOUNCE_PGID = "printf 'remediator-pgid=%s\\n' \"$$\" >&2"
_KILL_GROUP = (
    "kill -TERM -- -{0} 2>/dev/null || exit 0; for i in 1 2 3 4 5 6 7 8 9 10; do "
    "kill -0 -- -{0} 2>/dev/null || exit 0; sleep 0.2 2>/dev/null || sleep 1; done; "
    "kill -KILL -- -{0} 2>/dev/null; exit 0"
)


@dataclass(eq=False, slots=True)
class _Pooled:
    conn: asyncssh.SSHClientConnection
    sessions: int = 0
    idle: asyncio.TimerHandle | None = None


class SessionPool:
    """Connections per (host, port, user), sessions capped per host, closed when idle."""

    def __init__(self, *, max_sessions_per_host: int, idle_timeout: float) -> None:
        self._max_sessions_per_host = max_sessions_per_host
        self._idle_timeout = idle_timeout
        self._conns: dict[Key, list[_Pooled]] = {}
        self._connecting: dict[Key, asyncio.Lock] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def session(
        self, key: Key, connect: Connect
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A connection to `key` for one session; `connect` opens one when none is free."""
        host, port, _ = key
        slots = self._slots.setdefault((host, port), asyncio.Semaphore(self._max_sessions_per_host))
        async with slots:
            pooled = await self._checkout(key, connect)
            try:
                yield pooled.conn
            finally:
                self._checkin(key, pooled)

    async def _checkout(self, key: Key, connect: Connect) -> _Pooled:
        # One connect at a time per key: concurrent steps share it instead of racing.
        async with self._connecting.setdefault(key, asyncio.Lock()):
            pooled = self._reusable(key)
            if pooled is None:
                pooled = _Pooled(conn=await connect())
                self._conns.setdefault(key, []).append(pooled)
            pooled.sessions += 1
            if pooled.idle is not None:
                pooled.idle.cancel()
                pooled.idle = None
            return pooled

    def _reusable(self, key: Key) -> _Pooled | None:
        for pooled in list(self._conns.get(key, ())):
            if pooled.conn.is_closed():
                self._drop(key, pooled)
            elif pooled.sessions < _SESSIONS_PER_CONNECTION:
                return pooled
        return None

    def _checkin(self, key: Key, pooled: _Pooled) -> None:
        pooled.sessions -= 1
        if pooled.sessions == 0 and pooled.conn.is_closed():
            self._drop(key, pooled)
        elif pooled.sessions == 0:
            pooled.idle = asyncio.get_running_loop().call_later(
                self._idle_timeout, self._drop, key, pooled
            )

    def _drop(self, key: Key, pooled: _Pooled) -> None:
        if pooled.idle is not None:
            pooled.idle.cancel()
        conns = self._conns.get(key, [])
        if pooled in conns:
            conns.remove(pooled)
        if not conns:
            self._conns.pop(key, None)
        pooled.conn.close()

    async def close(self) -> None:
        closing = [(key, p) for key, conns in self._conns.items() for p in conns]
        for key, pooled in closing:
            self._drop(key, pooled)
        # Locks and semaphores bind to the loop that first used them.
        self._connecting.clear()
        self._slots.clear()
        await asyncio.gather(*(p.conn.wait_closed() for _, p in closing), return_exceptions=True)


@dataclass(slots=True)
class Finished:
    """How a remote command ended: its exit status (None if never reported) and output."""

    status: int | None
    stdout: bytes
    stderr: bytes


class _RemoteProcess:
    """One remote command: feeds stdin, collects capped output, kills its group on cancel."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess[bytes]
    ) -> None:
        self._conn = conn
        self._process = process
        self._pgid: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._stdout = asyncio.create_task(_read_capped(process.stdout))
        self._stderr = asyncio.create_task(self._read_stderr())

    async def finish(self, stdin: bytes) -> Finished:
        self._process.stdin.write(stdin)
        self._process.stdin.write_eof()
        # wait(), not gather(): a cancellation must leave the readers running for kill().
        await asyncio.wait({self._stdout, self._stderr})
        await self._process.wait_closed()
        return Finished(
            status=self._process.returncode,
            stdout=self._stdout.result(),
            stderr=self._stderr.result(),
        )

    async def _read_stderr(self) -> bytes:
        """Stderr without the pid announcement, which resolves `_pgid`."""
        head = b""
        try:
            while line := await self._process.stderr.readline():
                if line.startswith(_PGID_MARK) and line[len(_PGID_MARK) :].strip().isdigit():
                    self._pgid.set_result(int(line[len(_PGID_MARK) :]))
                    break
                head += line[: max(0, OUTPUT_CAP - len(head))]
        finally:
            if not self._pgid.done():
                self._pgid.set_result(None)
        return await _read_capped(self._process.stderr, head)

    async def kill(self, label: str) -> None:
        """Stop the remote process group (TERM, then KILL) unless it has already exited."""
        try:
            if self._process.returncode is None:
                await asyncio.wait({self._pgid}, timeout=_KILL_WAIT)
                pgid = self._pgid.result() if self._pgid.done() else None
                await self._kill_group(pgid, label)
        finally:
            self._process.close()
            for task in (self._stdout, self._stderr):
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # the caller's error says it already

    async def _kill_group(self, pgid: int | None, label: str) -> None:
        if pgid is None:
            _log.warning("%s: the remote process did not announce its pid; it may still run", label)
            return
        killing = asyncio.ensure_future(self._conn.run(_KILL_GROUP.format(pgid), check=False))
        done, _ = await asyncio.wait({killing}, timeout=_KILL_WAIT)
        if not done or killing.exception() is not None:
            killing.cancel()
            _log.warning("%s: could not kill remote process group %d", label, pgid)


async def _read_capped(reader: asyncssh.SSHReader[bytes], head: bytes = b"") -> bytes:
    """Everything `reader` yields, keeping at most OUTPUT_CAP bytes (the rest is drained)."""
    kept = bytearray(head)
    while chunk := await reader.read(65536):
        kept += chunk[: max(0, OUTPUT_CAP - len(kept))]
    return bytes(kept)


async def _start(
    conn: asyncssh.SSHClientConnection, command: str, where: str, label: str
) -> _RemoteProcess:
    """Open the session; a cancellation mid-open still kills whatever the open started."""
    import asyncssh  # loaded by the connect that made `conn`: a dictionary look-up here

    opening = asyncio.ensure_future(conn.create_process(command, encoding=None))
    try:
        process: asyncssh.SSHClientProcess[bytes] = await asyncio.shield(opening)
    except asyncio.CancelledError:
        await asyncio.wait({opening}, timeout=_KILL_WAIT)
        if opening.done() and not opening.cancelled() and opening.exception() is None:
            await _RemoteProcess(conn, opening.result()).kill(label)
        else:
            opening.cancel()
        raise
    except (OSError, asyncssh.Error) as exc:
        raise StepError(f"ssh {where}: cannot start a session: {exc}") from None
    return _RemoteProcess(conn, process)


async def execute(
    conn: asyncssh.SSHClientConnection, command: str, stdin: bytes, *, where: str, label: str
) -> Finished:
    """Run `command` fed `stdin` to its end; a cancellation kills its remote process group."""
    remote = await _start(conn, command, where, label)
    try:
        return await remote.finish(stdin)
    except BaseException:
        _log.info("%s: stopping the remote process", label)
        await remote.kill(label)
        raise
