"""Who may use `/api/`: bearer tokens from the config file, and two roles.

`api: {tokens: [{name, token, role: viewer | operator}]}`; a `token` of the
form `secret(NAME)` is read like any secret (environment, then the secrets
directory). A viewer reads; an operator also decides approvals and pauses.
Tokens are compared in constant time, and every token value is registered
with `Secrets`, so the log masking hides it wherever it might show up. With
no token configured, reads are served only on a loopback listener and every
control endpoint refuses with the way to configure one.

`Access.require(request, role)` is the one call a route makes: it returns the
caller's name (recorded as `by`) or raises 401/403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from remediator.errors import ConfigError, TemplateError
from remediator.rules.secrets import Secrets

ROLES = ("viewer", "operator")
_SECRET = re.compile(r"^\s*secret\(\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*\)\s*$")
HOW_TO = (
    "no API token is configured: add to the config file "
    "`api: {tokens: [{name: alice, token: secret(API_TOKEN), role: operator}]}` "
    "and send `Authorization: Bearer <token>`"
)


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    value: str
    role: str


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    body = json.dumps({"error": message})
    extra = {"WWW-Authenticate": "Bearer"} if status is web.HTTPUnauthorized else {}
    return status(text=body, content_type="application/json", headers=extra)


@dataclass(frozen=True, slots=True)
class Access:
    tokens: tuple[Token, ...]
    loopback: bool

    @classmethod
    def from_config(
        cls, section: Mapping[str, object], secrets: Secrets, *, loopback: bool
    ) -> Access:
        raw = section.get("tokens") or []
        if not isinstance(raw, list):
            raise ConfigError("config api.tokens: expected a list of {name, token, role}")
        return cls(tuple(_token(item, i, secrets) for i, item in enumerate(raw)), loopback)

    def require(self, request: web.Request, role: str) -> str:
        """The caller's name when it may act as `role`; raises 401 or 403 otherwise."""
        if not self.tokens:
            if role == "viewer" and self.loopback:
                return "anonymous"
            why = (
                HOW_TO if role == "operator" else HOW_TO + " (reads without a token: loopback only)"
            )
            raise _refuse(web.HTTPForbidden, why)
        token = self._match(request.headers.get("Authorization", ""))
        if token is None:
            raise _refuse(
                web.HTTPUnauthorized, "a valid `Authorization: Bearer <token>` is required"
            )
        if ROLES.index(token.role) < ROLES.index(role):
            raise _refuse(
                web.HTTPForbidden, f"token {token.name!r} is a {token.role}; this needs {role}"
            )
        return token.name

    def name_of(self, request: web.Request) -> str:
        """Who a refused caller was, for the audit trail: a token's name, never a token."""
        token = self._match(request.headers.get("Authorization", ""))
        if token is not None:
            return token.name
        return "no token" if "Authorization" not in request.headers else "unknown token"

    def _match(self, header: str) -> Token | None:
        given = bearer(header)
        if given is None:
            return None
        found = None
        for token in self.tokens:  # every token compared, so timing says nothing of which
            if hmac.compare_digest(given, token.value.encode()):
                found = token
        return found


def bearer(header: str | None) -> bytes | None:
    """The token an `Authorization: Bearer <token>` header presents, as bytes; None without one.

    Only the HTTP spaces and tabs around it are dropped: `str.strip` would also drop a
    non-breaking space and so present an empty token.
    """
    scheme, _, presented = (header or "").partition(" ")
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives them back.
    given = presented.encode("utf-8", "surrogateescape").strip(b" \t")
    return given if scheme.lower() == "bearer" and given else None


def webhook_token(value: str | None, secrets: Secrets) -> str | None:
    """The `webhook_token` setting resolved like an API token (None: the webhook is open)."""
    if value is None:
        return None
    return resolve_token(value, secrets, "setting webhook_token (REMEDIATOR_WEBHOOK_TOKEN)")


def resolve_token(value: str, secrets: Secrets, where: str) -> str:
    """A configured token, `secret(NAME)` resolved; refused when empty or only whitespace.

    Checked after resolving: a secret file holding a newline or an empty variable (a common
    placeholder) must not become a token that an empty or blank header matches.
    """
    if (secret := _SECRET.match(value)) is not None:
        try:
            value = secrets.get(secret.group(1))
        except TemplateError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if not value.strip():
        raise ConfigError(f"{where}: the token is empty or only whitespace; refusing to start")
    if value != value.strip(" \t"):
        raise ConfigError(
            f"{where}: the token starts or ends with a space or tab (HTTP drops them)"
        )
    secrets.known.add(value)  # masked in logs like a secret
    return value


def _token(item: object, index: int, secrets: Secrets) -> Token:
    where = f"config api.tokens[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected {{name, token, role}}")
    name, value, role = item.get("name"), item.get("token"), item.get("role", "viewer")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: a name is required (it is recorded as `by`)")
    if role not in ROLES:
        raise ConfigError(f"{where}.role: expected viewer or operator, got {role!r}")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.token: required")
    return Token(name, resolve_token(value, secrets, f"{where}.token"), str(role))


def is_loopback(address: str) -> bool:
    """Whether a `HOST:PORT` listener address is on loopback (reads without a token).

    An IP address is judged as one (`127.0.0.0/8`, `::1`); of names only `localhost`:
    a name such as `127.example.com` may resolve anywhere.
    """
    host = address.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
