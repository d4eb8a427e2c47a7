"""Connecting to NATS: server lists, credentials, TLS, reconnects, and the log lines
a connection's life produces.

The first connection tries each listed server a few times, so a seed server
that is down does not stop start-up while another is up; after that the
client reconnects as `--reconnect-attempts` says. What is secret in the
settings (passwords, tokens) is named here for masking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.errors import Error as NatsError

from remediator.errors import ConfigError, TransportError
from remediator.nats.client import TolerantClient
from remediator.settings import Settings

log = logging.getLogger(__name__)

_FIRST_CONNECT_ATTEMPTS = 5  # about 3 s at 0.5 s apart before start-up gives up
_CLOSE_WITHIN = 3  # seconds the connection's drain, or its close, may take at exit
_FLUSH_WITHIN = 5  # seconds a publish may wait for room in the client's outgoing buffer
_ANSWER_POLL = 0.1  # seconds between looks at a stale connection
MAX_OUTSTANDING_PINGS = 2  # one more unanswered ping and the client reconnects


async def connect(settings: Settings, url: str) -> Client:
    """Connect with every security option the settings carry.

    `url` may list several servers (`nats://a:4222,nats://b:4222`): the first
    connection tries each a few times, so a down seed server does not stop
    start-up while another is up; when none answers, start-up fails with the
    server's reason (a wrong password must not look like a hang). Once
    connected, the client reconnects forever, to any server of the cluster.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    last_error: list[Exception] = []
    nc = TolerantClient()
    options = _callbacks(nc, last_error) | _security(settings)
    options |= {
        "servers": servers,
        "max_reconnect_attempts": _FIRST_CONNECT_ATTEMPTS,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "name": "remediator",
        # A hung server is found within seconds (see `stale`), not nats-py's minutes.
        "drain_timeout": _CLOSE_WITHIN,  # see `close`
        "ping_interval": settings.ping_interval,
        # A publish past a full outgoing buffer waits for the flusher: never for ever.
        "flush_timeout": _FLUSH_WITHIN,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
    }
    try:
        await nc.connect(**options)  # type: ignore[arg-type]
    except (OSError, NatsError, TimeoutError) as exc:
        cause = last_error[0] if last_error else exc
        reason = str(cause) or type(cause).__name__
        where = ", ".join(_without_password(u) for u in servers)
        raise TransportError(f"cannot connect to NATS at {where}: {reason}") from exc
    # Read at each reconnect: from now on, as the settings say (-1: forever). Once they are
    # spent the connection is closed for good and the daemon exits for its supervisor.
    nc.options["max_reconnect_attempts"] = settings.reconnect_attempts
    return nc


def stale(nc: Client) -> bool:
    """Not connected, or connected to a server that stopped answering pings (hung): acks
    sent now would go nowhere. nats-py keeps the count private; without it (another
    version), only the connection state counts."""
    outstanding = int(getattr(nc, "_pings_outstanding", 0))
    return not nc.is_connected or outstanding >= MAX_OUTSTANDING_PINGS


async def until_answering(nc: Client) -> None:
    """Until the server answers again, or the client has reconnected (what arrives then
    is checked as maybe stale), or the connection is closed for good. Polled: nats-py
    tells of a reconnect but not of a pong."""
    log.warning("nats: the server does not answer; taking no new work until it does")
    while True:
        if not stale(nc) or nc.is_closed:
            return
        await asyncio.sleep(_ANSWER_POLL)


async def close(nc: Client) -> None:
    """Drain (what was received is handed over, what was published is flushed) when the
    server answers, within seconds: a subscription nobody reads is given up on after
    `_CLOSE_WITHIN` (the client's drain timeout, not its 30 s default), and a server that
    does not answer a ping is not drained at all (nats-py's drain would then wait on it,
    cancellation or not)."""
    if nc.is_closed:
        return
    try:
        await nc.flush(timeout=_CLOSE_WITHIN)
    except (NatsError, TimeoutError, OSError) as exc:
        log.warning("nats: no answer at exit, closing without a drain: %s", exc or type(exc))
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            async with asyncio.timeout(_CLOSE_WITHIN):
                await nc.close()
        return
    with contextlib.suppress(NatsError):  # closed or reconnecting meanwhile: nothing to drain
        await nc.drain()


def _callbacks(nc: Client, last_error: list[Exception]) -> dict[str, object]:
    """Logging callbacks; the last error is kept so a failed start-up can say why."""

    async def on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        await _on_error(exc)

    async def on_disconnect() -> None:
        # nats-py calls this on a clean close too: only a lost connection is news.
        if nc.is_closed:
            log.info("nats: connection closed")
        else:
            log.warning("nats: disconnected; reconnecting")

    return {
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": _on_reconnect,
    }


def _security(settings: Settings) -> dict[str, object]:
    options: dict[str, object] = {}
    if settings.creds:
        options["user_credentials"] = settings.creds
    if settings.nkey_seed:
        seed = settings.nkey_seed.strip()
        # A user seed itself (SU...), or the path of a file holding it (kept out of `ps`).
        options["nkeys_seed_str" if seed.startswith("SU") else "nkeys_seed"] = seed
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
    if settings.nats_token:
        options["token"] = settings.nats_token
    if settings.tls_ca or settings.tls_cert:
        options["tls"] = _tls_context(settings)
        options["tls_hostname"] = None
    return options


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def connection_secrets(settings: Settings, url: str) -> set[str]:
    """Every secret the connection uses, for the log masker: never in a log line."""
    found = {settings.nats_password, settings.nats_token}
    if settings.nkey_seed and settings.nkey_seed.strip().startswith("SU"):
        found.add(settings.nkey_seed.strip())
    for each in url.split(","):
        parts = urlsplit(each.strip())
        found.add(parts.password if parts.password else parts.username)  # bare user: a token
    return {secret for secret in found if secret}


def _tls_context(settings: Settings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except OSError as exc:  # ssl.SSLError is one too
        raise ConfigError(f"NATS TLS (tls_ca, tls_cert, tls_key): {exc}") from exc
    return context


async def _on_error(exc: Exception) -> None:
    log.warning("nats: %s", exc or type(exc).__name__)


async def _on_reconnect() -> None:
    log.info("nats: reconnected")
