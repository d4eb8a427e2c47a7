"""Secure NATS connections: the daemon against servers that require TLS, passwords, NKeys
and credentials files, each started by the test with a generated configuration.

Each test proves the whole path, not just the handshake: the daemon prepares its
stream over the secured connection, consumes an alert and stores the result.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path

import nats
import pytest

from tests.support.collect import Collector
from tests.support.daemon import DaemonProcess
from tests.support.kube_api import KubePKI
from tests.support.nats import NatsServer
from tests.support.nats_auth import nkey_server_config, nkey_user, operator_setup

PASSWORD = "pw-7f3c-not-in-logs"


async def fires_through(
    server: NatsServer,
    workdir: Path,
    unique: str,
    client_options: Mapping[str, object],
    daemon_args: list[str],
    env: Mapping[str, str] | None = None,
) -> DaemonProcess:
    """Start a daemon with `daemon_args`, publish one alert, and await its result."""
    name = f"secure-{unique}"
    (workdir / "rules" / "r.yaml").write_text(f"""
rules:
  - name: {name}
    on: [{unique}.alert]
    actions:
      - publish: {{subject: "{unique}.done", json: {{ok: true}}}}
""")
    nc = await nats.connect(server.url, **client_options)  # type: ignore[arg-type]
    try:
        results = await Collector.on(nc, f"remediator.results.{name}")
        args = ["--rules", "rules", "--stream", f"S{unique}", "--durable", f"D{unique}"]
        proc = DaemonProcess([*args, *daemon_args], workdir, env=dict(env or {})).start()
        try:
            await nc.jetstream().publish(f"{unique}.alert", json.dumps({"a": 1}).encode())
            (result,) = await results.wait_for(1)
        finally:
            assert proc.stop() == 0
    finally:
        await nc.close()
    assert result["status"] == "succeeded"
    return proc


@pytest.fixture
def pki(tmp_path: Path) -> KubePKI:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    return KubePKI.generate(tmp_path)


async def test_tls_with_client_certificate_and_password_from_the_config_file(
    tmp_path: Path, workdir: Path, unique: str, pki: KubePKI
) -> None:
    server_config = tmp_path / "tls.conf"
    server_config.write_text(f"""
tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}",
      ca_file: "{pki.ca_cert}", verify: true }}
authorization {{ user: alice, password: "{PASSWORD}" }}
""")
    server = NatsServer(tmp_path / "nats", extra_args=["-c", str(server_config)]).start()
    daemon_config = workdir / "remediator.yaml"
    daemon_config.write_text(f"""
nats:
  url: {server.url}
  user: alice
  password: "{PASSWORD}"
  tls: {{ca: "{pki.ca_cert}", cert: "{pki.client_cert}", key: "{pki.client_key}"}}
""")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    try:
        proc = await fires_through(
            server,
            workdir,
            unique,
            {"tls": context, "user": "alice", "password": PASSWORD},
            ["--config", str(daemon_config)],
        )
    finally:
        server.stop()
    assert PASSWORD not in proc.logs()


async def test_tls_flags_and_wrong_password_is_refused(
    tmp_path: Path, workdir: Path, unique: str, pki: KubePKI
) -> None:
    """The flags reach the same options; a wrong password fails start-up (exit 1) cleanly."""
    server_config = tmp_path / "tls.conf"
    server_config.write_text(f"""
tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}",
      ca_file: "{pki.ca_cert}", verify: true }}
authorization {{ user: alice, password: "{PASSWORD}" }}
""")
    server = NatsServer(tmp_path / "nats", extra_args=["-c", str(server_config)]).start()
    tls = ["--tls-ca", str(pki.ca_cert), "--tls-cert", str(pki.client_cert)]
    args = ["--rules", "rules", "--nats", server.url, *tls, "--tls-key", str(pki.client_key)]
    rule = f"{{name: r, on: [{unique}.x], actions: [publish: {{subject: x, data: x}}]}}"
    (workdir / "rules" / "r.yaml").write_text(f"rules: [{rule}]")
    proc = DaemonProcess([*args, "--user", "alice", "--password", "wrong-one"], workdir)
    try:
        proc.start(wait_ready=False)
        code = proc.wait(30)
    finally:
        proc.stop()
        server.stop()
    assert code == 1
    assert "cannot connect to NATS" in proc.logs() and "Authorization Violation" in proc.logs()
    assert "wrong-one" not in proc.logs()


async def test_nkey_seed_from_a_file_flag_and_from_the_environment(
    tmp_path: Path, workdir: Path, unique: str
) -> None:
    user = nkey_user()
    config = nkey_server_config(tmp_path, user)
    server = NatsServer(tmp_path / "nats", extra_args=["-c", str(config)]).start()
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(user.seed + "\n")
    client = {"nkeys_seed_str": user.seed}
    try:
        await fires_through(
            server, workdir, unique, client, ["--nats", server.url, "--nkey-seed", str(seed_file)]
        )
        env = {"REMEDIATOR_NKEY_SEED": user.seed, "REMEDIATOR_NATS_URL": server.url}
        proc = await fires_through(server, workdir, unique + "e", client, [], env=env)
    finally:
        server.stop()
    assert user.seed not in proc.logs()


async def test_credentials_file_in_operator_mode(
    tmp_path: Path, workdir: Path, unique: str
) -> None:
    setup = operator_setup(tmp_path)
    server = NatsServer(tmp_path / "nats", extra_args=["-c", str(setup.server_config)]).start()
    try:
        await fires_through(
            server,
            workdir,
            unique,
            {"user_credentials": str(setup.creds)},
            ["--nats", server.url, "--creds", str(setup.creds)],
        )
    finally:
        server.stop()
