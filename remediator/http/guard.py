"""What every answer of the listener carries, and which `Host` it answers to.

Security headers on every answer (the console and `/api/` alike): the page
loads only its own files (`Content-Security-Policy: default-src 'self'`), is
never framed, its answers are never sniffed into another type, and no link
leaks the console's address.

DNS rebinding: a web page on an attacker's domain can point that domain at
127.0.0.1 and then read the loopback listener as if same-origin. What it cannot
change is the `Host` header its requests carry: the attacker's name. So where
no token protects a route (the API with no `api.tokens`, the webhook with no
`webhook_token`), only requests naming the listener itself are served: the
names `localhost`, an IP address the listener is reached at or bound to, a
loopback address, and the host of `public_url`. Anything else is refused with
403. `/healthz`, `/readyz` and `/metrics` are served to any `Host` (probes and
scrapers use whatever name they were given, and they serve nothing a page
could use).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from remediator.http.webhook import PATH as WEBHOOK_PATH
from remediator.settings import Settings

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ANY_HOST = frozenset({"/healthz", "/readyz", "/metrics"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class HostCheck:
    """Which requests must name the listener itself in `Host`, and which names it has."""

    names: frozenset[str]  # besides IP literals of loopback and of the socket
    api_open: bool  # no API token configured
    webhook_open: bool  # no webhook token configured

    @classmethod
    def build(cls, settings: Settings, api_open: bool, webhook_open: bool) -> HostCheck:
        names = {"localhost", _normal(settings.http_host_port[0])}
        if settings.public_url:
            names.add(_normal(urlsplit(settings.public_url).hostname or ""))
        return cls(frozenset(n for n in names if n and not _unspecified(n)), api_open, webhook_open)

    def needed(self, path: str) -> bool:
        if path in ANY_HOST:
            return False
        return self.webhook_open if path == WEBHOOK_PATH else self.api_open

    def allows(self, host_header: str | None, local_ip: str | None) -> bool:
        if host_header is None:
            return True  # no browser sends a request without one
        name = _normal(_hostname(host_header))
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or (local_ip is not None and name == _normal(local_ip))


def guarded(check: HostCheck) -> Middleware:
    """The middleware: the Host check, then the handler; security headers on every answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if check.needed(request.path):
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            local_ip = str(sockname[0]) if sockname else None
            if not check.allows(request.headers.get("Host"), local_ip):
                return _refused(request.headers.get("Host", ""))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    return middleware


def _refused(host: str) -> web.Response:
    message = (
        f"Host {host[:100]!r} does not name this listener; with no token configured only "
        "localhost, its own address and the host of public_url are served (DNS rebinding)"
    )
    return web.Response(
        status=403,
        text=json.dumps({"error": message}),
        content_type="application/json",
        headers=SECURITY_HEADERS,
    )


def _hostname(host: str) -> str:
    """`name`, `name:port`, `[v6]` or `[v6]:port` -> the name or address alone."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def _unspecified(name: str) -> bool:
    """`0.0.0.0` or `::`: a bind-to-all, which some browsers send to loopback."""
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


def _normal(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()
