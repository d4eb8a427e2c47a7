"""The `ssh` action against a real OpenSSH sshd on loopback (see tests/support/sshd.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from remediator.actions.base import OUTPUT_CAP, StepContext
from remediator.actions.ssh import SSHAction
from remediator.actions.sshsettings import SSHSettings
from remediator.errors import ConfigError, StepError
from tests.support.sshd import (
    SSHServer,
    generate_key,
    known_hosts_line,
    running_agent,
    running_sshd,
)

CONTEXT = StepContext(event_id="ev-1", trace_id="tr-1", rule="ssh-test", step="ssh", timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(autouse=True)
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the keys a test names may log in, whatever agent the developer runs."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
async def action(sshd: SSHServer) -> AsyncIterator[SSHAction]:
    ssh = SSHAction(sshd.settings())
    yield ssh
    await ssh.close()


def target(sshd: SSHServer, **fields: object) -> dict[str, object]:
    return {"host": sshd.host, "port": sshd.port, **fields}


async def eventually(predicate: Callable[[], bool], deadline: float = 5.0) -> bool:
    """Poll `predicate` without blocking the loop until it holds or the deadline passes."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() >= end:
            return predicate()
        await asyncio.sleep(0.05)
    return True


async def run_with_retries(
    ssh: SSHAction, request: Mapping[str, object], attempts: int = 3
) -> tuple[int, StepError]:
    """Mirror the engine's retry loop (without backoff): returns the calls made and the error."""
    for call in range(1, attempts + 1):
        try:
            await ssh.run(request, CONTEXT)
        except StepError as exc:
            if exc.permanent or call == attempts:
                return call, exc
    raise AssertionError("expected the step to fail")


def remote_processes(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


def fingerprint(public_key: Path) -> str:
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True, text=True, check=True
    )
    return listed.stdout.split()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# a. arguments reach the script literally


async def test_script_args_arrive_literally_as_positional_parameters(
    action: SSHAction, sshd: SSHServer, tmp_path: Path
) -> None:
    marker = tmp_path / f"owned-{secrets.token_hex(4)}"
    args = [f'"; touch {marker}; echo "', "$(id)", "first line\nsecond line", "it's `x` \\ *"]
    script = 'printf "%s\\n" "$#"\nprintf "%s\\0" "$@"\n'

    output = await action.run(target(sshd, script=script, args=args), CONTEXT)

    count, _, rest = str(output["stdout"]).partition("\n")
    assert count == str(len(args))
    assert rest.split("\0")[:-1] == args
    assert not marker.exists()


async def test_scalar_args_are_rendered_as_text(action: SSHAction, sshd: SSHServer) -> None:
    request = target(sshd, script='printf "%s," "$@"', args=[3, 2.5, True, ""])
    output = await action.run(request, CONTEXT)
    assert output["stdout"] == "3,2.5,true,,"


# b. output and exit status


async def test_output_holds_stdout_stderr_and_exit_status(
    action: SSHAction, sshd: SSHServer
) -> None:
    output = await action.run(target(sshd, command="echo out; echo err >&2"), CONTEXT)
    assert output == {"exit_status": 0, "stdout": "out\n", "stderr": "err\n"}


async def test_unexpected_exit_status_is_a_transient_error_carrying_output(
    action: SSHAction, sshd: SSHServer
) -> None:
    request = target(sshd, script="echo partial; echo broken >&2; exit 3")
    with pytest.raises(StepError) as caught:
        await action.run(request, CONTEXT)
    assert not caught.value.permanent
    assert "exit status 3" in caught.value.message
    assert caught.value.output == {"exit_status": 3, "stdout": "partial\n", "stderr": "broken\n"}


@pytest.mark.parametrize("expect_exit", [[0, 3], 3, "3", ["3"]])
async def test_expect_exit_accepts_listed_statuses(
    action: SSHAction, sshd: SSHServer, expect_exit: object
) -> None:
    output = await action.run(target(sshd, command="exit 3", expect_exit=expect_exit), CONTEXT)
    assert output["exit_status"] == 3


async def test_port_may_be_rendered_as_a_string(action: SSHAction, sshd: SSHServer) -> None:
    request = {"host": sshd.host, "port": str(sshd.port), "command": "echo ok"}
    assert (await action.run(request, CONTEXT))["stdout"] == "ok\n"


async def test_output_is_capped(action: SSHAction, sshd: SSHServer) -> None:
    command = "head -c 200000 /dev/zero | tr '\\0' a; head -c 100000 /dev/zero | tr '\\0' b >&2"
    output = await action.run(target(sshd, command=command), CONTEXT)
    assert output["stdout"] == "a" * OUTPUT_CAP
    assert output["stderr"] == "b" * OUTPUT_CAP


# c. host keys are always verified


async def test_host_key_mismatch_is_permanent_and_names_host_and_offered_key(
    sshd: SSHServer, tmp_path: Path
) -> None:
    impostor = generate_key(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.port, impostor.with_suffix(".pub")))
    ssh = SSHAction(sshd.settings(known_hosts=known_hosts))
    try:
        calls, error = await run_with_retries(ssh, target(sshd, command="true"))
    finally:
        await ssh.close()
    assert calls == 1
    assert error.permanent
    assert f"{sshd.host}:{sshd.port}" in error.message
    assert "does not match" in error.message
    assert fingerprint(sshd.host_key) in error.message


async def test_unknown_host_is_permanent(sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    ssh = SSHAction(sshd.settings(known_hosts=known_hosts))
    try:
        calls, error = await run_with_retries(ssh, target(sshd, command="true"))
    finally:
        await ssh.close()
    assert (calls, error.permanent) == (1, True)
    assert f"has no key for {sshd.host}:{sshd.port}" in error.message
    assert fingerprint(sshd.host_key) in error.message


async def test_missing_known_hosts_file_is_permanent_and_named(
    sshd: SSHServer, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    ssh = SSHAction(sshd.settings(known_hosts=missing))
    try:
        calls, error = await run_with_retries(ssh, target(sshd, command="true"))
    finally:
        await ssh.close()
    assert (calls, error.permanent) == (1, True)
    assert str(missing) in error.message


async def test_unauthorized_client_key_is_permanent(sshd: SSHServer, tmp_path: Path) -> None:
    stranger = generate_key(tmp_path / "stranger")
    ssh = SSHAction(sshd.settings(client_keys=(stranger,)))
    try:
        calls, error = await run_with_retries(ssh, target(sshd, command="true"))
    finally:
        await ssh.close()
    assert (calls, error.permanent) == (1, True)
    assert "authentication failed" in error.message
    assert f"{sshd.user}@{sshd.host}:{sshd.port}" in error.message


async def test_keys_from_the_agent_are_used(
    sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
    with running_agent(tmp_path, sshd.client_key) as agent_socket:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
        ssh = SSHAction(sshd.settings(client_keys=()))
        try:
            output = await ssh.run(target(sshd, command="echo via agent"), CONTEXT)
        finally:
            await ssh.close()
    assert output["stdout"] == "via agent\n"


async def test_missing_client_key_is_permanent_and_named(sshd: SSHServer, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_key"
    ssh = SSHAction(sshd.settings(client_keys=(missing,)))
    try:
        calls, error = await run_with_retries(ssh, target(sshd, command="true"))
    finally:
        await ssh.close()
    assert (calls, error.permanent) == (1, True)
    assert str(missing) in error.message


# d. an unreachable port is worth retrying


async def test_closed_port_is_a_transient_error_naming_the_address(
    action: SSHAction, sshd: SSHServer
) -> None:
    port = free_port()
    calls, error = await run_with_retries(
        action, {"host": "127.0.0.1", "port": port, "command": "true"}
    )
    assert (calls, error.permanent) == (3, False)
    assert f"127.0.0.1:{port}" in error.message
    assert "cannot connect" in error.message


# e. connections are shared and sessions capped per host


async def test_sessions_per_host_are_capped_and_connections_reused(
    sshd: SSHServer, tmp_path: Path
) -> None:
    journal = tmp_path / "sessions.log"
    # Each session marks its start and end in the journal (single O_APPEND writes keep the
    # order); the short sleep holds the session open so that uncapped runs would overlap.
    script = 'echo + >> "$1"; sleep 0.2; echo - >> "$1"'
    logins_before = sshd.accepted_logins()
    ssh = SSHAction(sshd.settings(max_sessions_per_host=4))
    try:
        outputs = await asyncio.gather(
            *(ssh.run(target(sshd, script=script, args=[str(journal)]), CONTEXT) for _ in range(20))
        )
    finally:
        await ssh.close()

    assert [o["exit_status"] for o in outputs] == [0] * 20
    running, most = 0, 0
    for mark in journal.read_text().split():
        running += 1 if mark == "+" else -1
        most = max(most, running)
    assert 2 <= most <= 4
    assert journal.read_text().count("+") == 20
    assert sshd.accepted_logins() - logins_before == 1


async def test_idle_connections_are_closed(sshd: SSHServer) -> None:
    disconnects = sshd.log_text().count("Received disconnect from")
    ssh = SSHAction(sshd.settings(idle_timeout=0.1))
    try:
        await ssh.run(target(sshd, command="true"), CONTEXT)
        closed = await eventually(
            lambda: sshd.log_text().count("Received disconnect from") > disconnects
        )
    finally:
        await ssh.close()
    assert closed


async def test_close_closes_pooled_connections(sshd: SSHServer) -> None:
    disconnects = sshd.log_text().count("Received disconnect from")
    ssh = SSHAction(sshd.settings())
    await ssh.run(target(sshd, command="true"), CONTEXT)
    await ssh.close()
    assert await eventually(
        lambda: sshd.log_text().count("Received disconnect from") == disconnects + 1
    )


# f. a timeout kills the remote process


@pytest.mark.parametrize("kind", ["command", "script"])
async def test_timeout_kills_the_remote_process(
    action: SSHAction, sshd: SSHServer, kind: str
) -> None:
    duration = f"30.{secrets.randbelow(10**6):06d}"
    request = (
        target(sshd, command=f"sleep {duration}")
        if kind == "command"
        else target(sshd, script='sleep "$1"; echo done', args=[duration])
    )
    assert not remote_processes(f"sleep {duration}")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            await action.run(request, CONTEXT)

    assert await eventually(lambda: not remote_processes(f"sleep {duration}"))
    # The pooled connection survives the kill and serves the next step.
    output = await action.run(target(sshd, command="echo alive"), CONTEXT)
    assert output["stdout"] == "alive\n"


async def test_remote_process_sees_its_own_process_group(
    action: SSHAction, sshd: SSHServer
) -> None:
    """The shell's pid, which the action reads to kill on timeout, leads its process group."""
    output = await action.run(target(sshd, command="ps -o pid= -o pgid= -p $$"), CONTEXT)
    pid, pgid = str(output["stdout"]).split()
    assert pid == pgid
    assert output["stderr"] == ""  # the announcement is not part of the output


# request checks (no connection needed)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"command": "true"}, "host: required"),
        ({"host": "h", "command": "true", "script": "true"}, "exactly one of"),
        ({"host": "h"}, "exactly one of"),
        ({"host": "h", "command": "true", "args": ["x"]}, "args: only with script"),
        ({"host": "h", "script": "true", "args": [{"a": 1}]}, "args[0]"),
        ({"host": "h", "script": "true", "args": "x"}, "args: expected list"),
        ({"host": "h", "command": "true", "port": 0}, "port"),
        ({"host": "h", "command": "true", "port": "ssh"}, "port: expected an integer"),
        ({"host": "h", "command": "true", "port": True}, "port: expected an integer"),
        ({"host": "h", "command": "true", "expect_exit": []}, "expect_exit: must list"),
        ({"host": "h", "command": "true", "expect_exit": [True]}, "expect_exit: expected an"),
        ({"host": "h", "command": "true", "hosts": "x"}, "unknown field(s) hosts"),
    ],
)
async def test_bad_requests_are_permanent(request_fields: dict[str, object], message: str) -> None:
    ssh = SSHAction(SSHSettings(user="ops"))
    with pytest.raises(StepError) as caught:
        await ssh.run(request_fields, CONTEXT)
    assert caught.value.permanent
    assert message in caught.value.message


async def test_user_comes_from_the_step_or_the_settings() -> None:
    ssh = SSHAction(SSHSettings())
    with pytest.raises(StepError, match="user") as caught:
        await ssh.run({"host": "h", "command": "true"}, CONTEXT)
    assert caught.value.permanent


# settings


def test_settings_defaults() -> None:
    settings = SSHSettings.from_config({})
    assert settings == SSHSettings()
    assert settings.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert (settings.client_keys, settings.user) == ((), None)
    assert (settings.connect_timeout, settings.max_sessions_per_host) == (10.0, 4)
    assert settings.idle_timeout == 60.0


def test_settings_from_config_section() -> None:
    settings = SSHSettings.from_config(
        {
            "known_hosts": "~/hosts",
            "client_keys": ["~/.ssh/id_ed25519", "/etc/remediator/key"],
            "user": "ops",
            "connect_timeout": "1500ms",
            "max_sessions_per_host": 8,
            "idle_timeout": "2m",
        }
    )
    home = Path(os.path.expanduser("~"))
    assert settings == SSHSettings(
        known_hosts=home / "hosts",
        client_keys=(home / ".ssh/id_ed25519", Path("/etc/remediator/key")),
        user="ops",
        connect_timeout=1.5,
        max_sessions_per_host=8,
        idle_timeout=120.0,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"knownhosts": "x"}, "ssh: unknown key(s) knownhosts"),
        ({"known_hosts": 3}, "ssh.known_hosts"),
        ({"client_keys": "~/.ssh/id_ed25519"}, "ssh.client_keys: expected a list"),
        ({"client_keys": ["ok", 5]}, "ssh.client_keys"),
        ({"user": ""}, "ssh.user"),
        ({"connect_timeout": "soon"}, "ssh.connect_timeout: not a duration"),
        ({"connect_timeout": 0}, "ssh.connect_timeout: must be positive"),
        ({"idle_timeout": "-1s"}, "ssh.idle_timeout"),
        ({"max_sessions_per_host": "4"}, "ssh.max_sessions_per_host: expected a whole number"),
        ({"max_sessions_per_host": True}, "ssh.max_sessions_per_host"),
        ({"max_sessions_per_host": 0}, "ssh.max_sessions_per_host: must be at least 1"),
    ],
)
def test_bad_settings_raise_config_errors(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SSHSettings.from_config(section)
    assert message in str(caught.value)
