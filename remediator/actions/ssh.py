"""The `ssh` action: run a command, or a script with arguments, on a remote host.

This module owns what the `ssh` action means: a step's request (a `command`, or a
`script` with `args`, checked into `_Request`), whom to trust when connecting (host
keys verified against known_hosts, always on, no opt-out; keys and known_hosts read
afresh at each connect) and what a finished command means for the step (its exit
status against `expect_exit`). Pooling connections and the life of the remote
process, including killing it when the engine's timeout cancels the step, belong to
`remediator.actions.sshsession`; the daemon config's `ssh:` section to
`remediator.actions.sshsettings`. asyncssh (0.1 s to import) is imported by the code
that calls it: when the first `ssh` step runs, not at start-up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remediator.actions.base import StepContext, cap_text, optional, required
from remediator.actions.sshsession import ANNOUNCE_PGID, SessionPool, execute
from remediator.actions.sshsettings import SSHSettings
from remediator.errors import StepError

if TYPE_CHECKING:
    import asyncssh

_log = logging.getLogger(__name__)

_REQUEST_KEYS = frozenset({"host", "port", "user", "command", "script", "args", "expect_exit"})
_KEEPALIVE_INTERVAL = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    """One rendered `ssh` step, checked."""

    host: str
    port: int
    user: str
    command: str  # what the remote login shell runs
    stdin: bytes
    expect_exit: frozenset[int]

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.host, self.port, self.user)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def _parse_request(request: Mapping[str, object], settings: SSHSettings) -> _Request:
    unknown = sorted(set(request) - _REQUEST_KEYS)
    if unknown:
        raise StepError(f"unknown field(s) {', '.join(unknown)}", permanent=True)
    host = required(request, "host", str)
    port = _whole("port", request.get("port", 22))
    if not 0 < port < 65536:
        raise StepError(f"port: expected 1-65535, got {port}", permanent=True)
    user = optional(request, "user", str) or settings.user
    if not host or not user:
        raise StepError(
            "host and user: required (user may come from the daemon's ssh.user)", permanent=True
        )
    command, stdin = _remote_command(request)
    return _Request(
        host=host,
        port=port,
        user=user,
        command=command,
        stdin=stdin,
        expect_exit=_expect_exit(request),
    )


def _remote_command(request: Mapping[str, object]) -> tuple[str, bytes]:
    """The exec string and stdin: a `command` as given, or `sh -s -- ARGS` fed the script."""
    command = optional(request, "command", str)
    script = optional(request, "script", str)
    if (command is None) == (script is None):
        raise StepError("exactly one of command or script is required", permanent=True)
    if command is not None:
        if "args" in request:
            raise StepError("args: only with script", permanent=True)
        return f"{ANNOUNCE_PGID}\n{command}", b""
    args = [_arg_text(i, v) for i, v in enumerate(optional(request, "args", list) or [])]
    quoted = "".join(f" {shlex.quote(a)}" for a in args)
    return f"{ANNOUNCE_PGID}; exec sh -s --{quoted}", (script or "").encode()


def _arg_text(index: int, value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise StepError(
            f"args[{index}]: expected a string, number or boolean, got {type(value).__name__}",
            permanent=True,
        )
    if "\0" in text:
        raise StepError(f"args[{index}]: contains a NUL character", permanent=True)
    return text


def _expect_exit(request: Mapping[str, object]) -> frozenset[int]:
    statuses = request.get("expect_exit", [0])
    if not isinstance(statuses, list):
        statuses = [statuses]
    if not statuses:
        raise StepError("expect_exit: must list at least one status", permanent=True)
    return frozenset(_whole("expect_exit", s) for s in statuses)


def _whole(name: str, value: object) -> int:
    """An integer field; rendered templates may hand it over as a string of digits."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StepError(f"{name}: expected an integer, got {value!r}", permanent=True)


@dataclass(slots=True)
class _Offered:
    """The key a server offered when known_hosts rejected it, for the error message."""

    key: str | None = None


@functools.cache
def _witness_class() -> Callable[[_Offered], asyncssh.SSHClient]:
    """An asyncssh client that notes the key a server offered when known_hosts rejects it
    (never accepting it); defined on first use, as asyncssh is imported then."""
    import asyncssh

    class HostKeyWitness(asyncssh.SSHClient):
        def __init__(self, offered: _Offered) -> None:
            super().__init__()
            self.offered = offered

        def validate_host_public_key(
            self, host: str, addr: str, port: int, key: asyncssh.SSHKey
        ) -> bool:
            self.offered.key = f"{key.get_algorithm()} {key.get_fingerprint()}"
            return False

        def validate_host_ca_key(
            self, host: str, addr: str, port: int, key: asyncssh.SSHKey
        ) -> bool:
            self.offered.key = (
                f"certificate signed by {key.get_algorithm()} {key.get_fingerprint()}"
            )
            return False

    return HostKeyWitness


def _load_credentials(
    settings: SSHSettings,
) -> tuple[asyncssh.SSHKnownHosts, Sequence[asyncssh.SSHKeyPair]]:
    """Read known_hosts and the client keys afresh, so rotating either needs no restart."""
    import asyncssh

    try:
        known_hosts = asyncssh.read_known_hosts(str(settings.known_hosts))
    except (OSError, ValueError) as exc:
        raise StepError(
            f"cannot read known_hosts {settings.known_hosts}: {exc}", permanent=True
        ) from None
    try:
        keys = asyncssh.load_keypairs([str(p) for p in settings.client_keys])
    except (OSError, ValueError) as exc:  # missing, unreadable, encrypted, not a key
        paths = ", ".join(str(p) for p in settings.client_keys)
        raise StepError(f"cannot load ssh.client_keys ({paths}): {exc}", permanent=True) from None
    return known_hosts, keys


async def _connect(req: _Request, settings: SSHSettings) -> asyncssh.SSHClientConnection:
    """A connection whose host key known_hosts vouches for; StepError says why not."""
    import asyncssh

    known_hosts, keys = await asyncio.to_thread(_load_credentials, settings)
    offered = _Offered()
    witness = _witness_class()(offered)
    try:
        return await asyncssh.connect(
            req.host,
            req.port,
            username=req.user,
            known_hosts=known_hosts,
            client_keys=keys or (),
            client_factory=lambda: witness,
            config=None,  # the daemon's settings, not whatever ~/.ssh/config says
            connect_timeout=settings.connect_timeout,
            keepalive_interval=_KEEPALIVE_INTERVAL,
            preferred_auth="publickey",
            gss_kex=False,
            gss_auth=False,
            agent_forwarding=False,
            x11_forwarding=False,
            request_pty=False,
        )
    except (OSError, asyncssh.Error) as exc:
        raise _connect_error(req, settings, known_hosts, offered, exc) from None


def _connect_error(
    req: _Request,
    settings: SSHSettings,
    known_hosts: asyncssh.SSHKnownHosts,
    offered: _Offered,
    exc: Exception,
) -> StepError:
    """Trust and credential failures are permanent; the network's are worth a retry."""
    import asyncssh

    if isinstance(exc, asyncssh.PermissionDenied):
        return StepError(
            f"ssh {req.where}: authentication failed ({exc.reason}); "
            "is the client key in the remote authorized_keys?",
            permanent=True,
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return _host_key_error(req, settings.known_hosts, known_hosts, offered, exc)
    if isinstance(exc, asyncssh.KeyExchangeFailed):  # no common algorithm
        return StepError(f"ssh {req.where}: key exchange failed: {exc}", permanent=True)
    if isinstance(exc, TimeoutError):
        return StepError(f"ssh {req.where}: connect timed out after {settings.connect_timeout:g}s")
    return StepError(f"ssh {req.where}: cannot connect: {exc}{_listed_hint(req, known_hosts)}")


def _listed_hint(req: _Request, known_hosts: asyncssh.SSHKnownHosts) -> str:
    # A server with none of the listed key types hangs up during key exchange.
    listed = known_hosts.match(req.host, "", req.port)[0]
    types = sorted({key.get_algorithm() for key in listed})
    return f" (known_hosts lists {', '.join(types)} for this host)" if types else ""


def _host_key_error(
    req: _Request,
    path: Path,
    known_hosts: asyncssh.SSHKnownHosts,
    offered: _Offered,
    exc: Exception,
) -> StepError:
    listed, ca_keys, *_ = known_hosts.match(req.host, "", req.port)
    if not listed and not ca_keys:
        problem = f"{path} has no key for {req.host}:{req.port}"
    else:
        problem = f"the host key does not match {path}"
    offer = f"; server offered {offered.key}" if offered.key else ""
    return StepError(
        f"ssh {req.where}: host key not verified: {problem}{offer} ({exc}); "
        "check the key out of band before updating known_hosts",
        permanent=True,
    )


class SSHAction:
    """The `ssh` action kind: one instance per daemon, holding the connection pool."""

    def __init__(self, settings: SSHSettings) -> None:
        self._settings = settings
        self._pool = SessionPool(
            max_sessions_per_host=settings.max_sessions_per_host,
            idle_timeout=settings.idle_timeout,
        )

    async def run(self, request: Mapping[str, object], context: StepContext) -> dict[str, object]:
        import asyncssh

        req = _parse_request(request, self._settings)
        label = f"rule {context.rule} event {context.event_id} step {context.step}: ssh {req.where}"
        connect = functools.partial(_connect, req, self._settings)
        try:
            async with self._pool.session(req.key, connect) as conn:
                finished = await execute(conn, req.command, req.stdin, where=req.where, label=label)
        except (OSError, asyncssh.Error) as exc:
            raise StepError(f"ssh {req.where}: connection failed: {exc}") from None
        _log.debug("%s: exit status %s", label, finished.status)
        output: dict[str, object] = {
            "exit_status": finished.status,
            "stdout": cap_text(finished.stdout.decode(errors="replace")),
            "stderr": cap_text(finished.stderr.decode(errors="replace")),
        }
        if finished.status is None:
            raise StepError(
                f"ssh {req.where}: the connection closed before the command "
                "reported an exit status",
                output=output,
            )
        if finished.status not in req.expect_exit:
            expected = ", ".join(str(s) for s in sorted(req.expect_exit))
            raise StepError(
                f"ssh {req.where}: exit status {finished.status} (expected {expected})",
                output=output,
            )
        return output

    async def close(self) -> None:
        await self._pool.close()
