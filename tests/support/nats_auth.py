"""Secured nats-server set-ups for tests: NKey users, and operator mode with a creds file.

NKeys come from the `nkeys` package. A credentials file needs the decentralized
JWT chain: a self-signed operator, an account signed by the operator (with
JetStream limits), and a user signed by the account; the server trusts the
operator and preloads the account in a memory resolver. The JWTs are built
here by hand (header.claims.signature, Ed25519 over the first two parts) as
the `nsc` tool would, so no Go tooling is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nkeys

_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


@dataclass(frozen=True)
class Identity:
    seed: str
    public: str

    @classmethod
    def generate(cls, prefix: int) -> Identity:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        pair = nkeys.from_seed(bytearray(seed))
        return cls(seed.decode(), pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def nkey_user() -> Identity:
    return Identity.generate(nkeys.PREFIX_BYTE_USER)


def nkey_server_config(directory: Path, user: Identity) -> Path:
    """A server that admits only the NKey user `user` (JetStream comes from the -js flag)."""
    path = directory / "nkey.conf"
    path.write_text(f"authorization {{ users: [ {{ nkey: {user.public} }} ] }}\n")
    return path


@dataclass(frozen=True)
class OperatorSetup:
    """Operator mode: the server config and a user's credentials file."""

    server_config: Path
    creds: Path


def operator_setup(directory: Path) -> OperatorSetup:
    operator = Identity.generate(nkeys.PREFIX_BYTE_OPERATOR)
    system = Identity.generate(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs a system account
    account = Identity.generate(nkeys.PREFIX_BYTE_ACCOUNT)
    user = nkey_user()
    operator_claims = {"type": "operator", "system_account": system.public}
    operator_jwt = _jwt(operator, operator.public, "test-operator", operator_claims)
    system_jwt = _jwt(operator, system.public, "SYS", {"type": "account"})
    account_jwt = _jwt(
        operator, account.public, "test-account", {"type": "account", "limits": _UNLIMITED}
    )
    user_claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    user_jwt = _jwt(account, user.public, "remediator", user_claims)
    server_config = directory / "operator.conf"
    preload = f'{system.public}: "{system_jwt}", {account.public}: "{account_jwt}"'
    server_config.write_text(
        f'operator: "{operator_jwt}"\n'
        f"system_account: {system.public}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{ {preload} }}\n"
    )
    creds = directory / "user.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n"
    )
    return OperatorSetup(server_config, creds)


def _jwt(issuer: Identity, subject: str, name: str, nats: dict[str, object]) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims: dict[str, object] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.new("sha512_256", json.dumps(claims).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    payload = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
