"""Every command the README shows is run here, or checked against the files it names.

The commands are read from the README itself (tests/support/readme.py: its ```sh blocks,
and inline code starting with `remediator`, `pip`, `bash`, ...). Each goes to the entry of
SETUP or LIVE with the longest prefix of its words; a command no entry knows fails
`test_every_command_has_a_check`, so a command added to the README needs a check here.

Substitutions, because the machine is shared and the ports may be taken:
- `remediator run` is the embedded default, run for real, with `--embedded-port` and
  `--http` on free loopback ports instead of 4222 and 9464, in a temp directory holding a
  copy of rules/; it is stopped by its pid (SIGTERM) and must exit 0.
- The other `remediator` commands reach that server through REMEDIATOR_NATS_URL.
- Placeholders a reader fills in (`ID`, `OLD_RULES`) get a value: an unknown id, which
  must be refused in one line; rules/ itself.

Not run: the set-up commands (a venv, `pip install`, `apt-get`, the whole suite, the
.ci scripts). Each is checked to name files that exist and agree with each other;
tests/test_packaging.py installs requirements-run.txt as the Dockerfile does, and .ci/run
runs the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, free_port
from tests.support.poll import until
from tests.support.readme import Command, blocks, commands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OLD_RULES = "rules/"  # `replay --against OLD_RULES`: the shipped rules against themselves


@dataclass
class Daemon:
    process: DaemonProcess
    url: str

    @property
    def workdir(self) -> Path:
        return self.process.workdir


async def remediator(daemon: Daemon, argv: tuple[str, ...]) -> tuple[int, str, str]:
    """`remediator ARGS` as a reader types it, from the daemon's directory."""
    env = {**os.environ, "REMEDIATOR_NATS_URL": daemon.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "remediator",
        *argv[1:],
        cwd=daemon.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def succeeds(daemon: Daemon, command: Command, *expected: str) -> str:
    code, out, err = await remediator(daemon, command.argv)
    assert code == 0, f"{command}: exit {code}\n{out}\n{err}"
    for text in expected:
        assert text in out, f"{command}: {text!r} not in\n{out}"
    return out


# --- the commands the daemon answers --------------------------------------------------------


async def run_daemon(daemon: Daemon, command: Command) -> None:
    assert command.argv == ("remediator", "run"), "the README shows the embedded default"
    assert daemon.process.get("/readyz")[0] == 200


async def publish(daemon: Daemon, command: Command) -> None:
    out = await succeeds(daemon, command)
    assert json.loads(out)["stream"] == "ALERTS"


async def history(daemon: Daemon, command: Command) -> None:
    async def shows_the_result() -> bool:
        code, out, _ = await remediator(daemon, command.argv)
        return code == 0 and re.search(r"high-cpu-notify\s+succeeded\s+ALERTS:1\b", out) is not None

    await until(shows_the_result, timeout=30, what=f"{command} shows the first rule's result")


async def show(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "rule high-cpu-notify: succeeded", "notify  publish")


async def pause(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "paused", "incident 4711")


async def status(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "pauses: 1", "incident 4711", "pending approvals: 0")


async def resume(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command)
    out = await succeeds(daemon, Command(("remediator", "status"), command.line, False))
    assert "pauses: 0" in out


async def approvals(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "pending approvals: 0")


async def approve(daemon: Daemon, command: Command) -> None:
    code, out, err = await remediator(daemon, (*command.argv, "--by", "readme-test"))
    assert code != 0, f"{command}: an unknown id was accepted\n{out}"
    assert "Traceback" not in err and err.strip(), f"{command}: {err}"


async def trigger(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "high-cpu-notify", "succeeded")


async def audit(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "pause", "alice", "trigger")


async def replay(daemon: Daemon, command: Command) -> None:
    argv = tuple(OLD_RULES if word == "OLD_RULES" else word for word in command.argv)
    await succeeds(daemon, Command(argv, command.line, command.inline))


async def validate(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command)


async def explain(daemon: Daemon, command: Command) -> None:
    await succeeds(daemon, command, "high-cpu-notify", "saw 'warning'")


async def schema(daemon: Daemon, command: Command) -> None:
    assert json.loads(await succeeds(daemon, command))["type"] == "object"


LIVE: dict[tuple[str, ...], Callable[[Daemon, Command], Awaitable[None]]] = {
    ("remediator", "run"): run_daemon,
    ("remediator", "publish"): publish,
    ("remediator", "history"): history,
    ("remediator", "show"): show,
    ("remediator", "pause"): pause,
    ("remediator", "status"): status,
    ("remediator", "resume"): resume,
    ("remediator", "approvals"): approvals,
    ("remediator", "approve"): approve,
    ("remediator", "trigger"): trigger,
    ("remediator", "audit"): audit,
    ("remediator", "replay"): replay,
    ("remediator", "validate"): validate,
    ("remediator", "test"): validate,
    ("remediator", "explain"): explain,
    ("remediator", "schema"): schema,
}


# --- set-up commands: what they name exists and agrees --------------------------------------


def pins(lock: Path) -> dict[str, str]:
    text = lock.read_text()
    for requirement in re.findall(r"^(\S+==\S+)(.*?)(?=^\S|\Z)", text, re.M | re.S):
        assert "--hash=sha256:" in requirement[1], f"{lock.name}: {requirement[0]} has no hash"
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def venv(command: Command) -> None:
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()


def activate(command: Command) -> None:
    assert command.argv == (".", ".venv/bin/activate")


def install_lock(command: Command) -> None:
    lock = ROOT / command.argv[-1]
    pinned = pins(lock)
    if lock.name == "requirements-run.txt":  # the runtime part, at the tested versions
        tested = pins(ROOT / "requirements.txt")
        assert {name: tested.get(name) for name in pinned} == pinned
        assert "requirements-run.txt" in (ROOT / "Dockerfile").read_text()
    else:
        assert {"pytest", "mkdocs", "mkdocs-material"} <= set(pinned)


def install_editable(command: Command) -> None:
    """`--no-deps` works only because the lock holds every runtime dependency."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("dependencies = [") : text.index("]", text.index("dependencies = ["))]
    wanted = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block, re.M)
    pinned = pins(ROOT / "requirements-run.txt")
    assert wanted and {name.lower().replace("_", "-") for name in wanted} <= set(pinned)


def install_ranges(command: Command) -> None:
    assert re.search(r'"nats-py>=[^"]+,<', (ROOT / "pyproject.toml").read_text())


def whole_suite(command: Command) -> None:
    assert command.argv == ("pytest",)
    assert 'testpaths = ["tests"]' in (ROOT / "pyproject.toml").read_text()


def collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def quick_part(command: Command) -> None:
    quick = collected(*command.argv[1:])
    everything = collected()
    assert quick and set(quick) < set(everything)
    assert not [test for test in quick if test.startswith("tests/e2e/")]
    assert "tests/test_packaging.py::test_the_dockerfile_pip_steps_build_a_runnable_remediator" in (
        set(everything) - set(quick)
    )


def apt_get(command: Command) -> None:
    packages = set(command.argv[3:])
    assert packages == {"openssh-server", "chromium", "chromium-driver", "prometheus"}
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y -qq openssh-server chromium chromium-driver prometheus" in ci


def ci_script(command: Command) -> None:
    script = ROOT / command.argv[1]
    assert script.is_file(), f"{command}: no {script}"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def docs_site(command: Command) -> None:
    """`mkdocs serve` serves what `mkdocs build --strict` builds: built here, offline."""
    with tempfile.TemporaryDirectory() as site:
        done = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", site],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        )
    assert done.returncode == 0, done.stdout + done.stderr


SETUP: dict[tuple[str, ...], Callable[[Command], None]] = {
    ("python3", "-m", "venv"): venv,
    (".",): activate,
    ("pip", "install", "--require-hashes", "-r"): install_lock,
    ("pip", "install", "--no-deps", "-e", "."): install_editable,
    ("pip", "install", "."): install_ranges,
    ("pytest",): whole_suite,
    ("pytest", "tests"): quick_part,
    ("apt-get", "install", "-y"): apt_get,
    ("bash", ".ci/run"): ci_script,
    ("bash", ".ci/lock"): ci_script,
    ("bash", ".ci/latest"): ci_script,
    ("mkdocs", "serve"): docs_site,
}


def check_for(command: Command) -> tuple[str, ...] | None:
    """The longest prefix in SETUP or LIVE that the command starts with."""
    prefixes = [p for p in [*SETUP, *LIVE] if command.argv[: len(p)] == p]
    return max(prefixes, key=len, default=None)


SHOWN = commands(README.read_text())


# --- the tests -------------------------------------------------------------------------------


def test_every_command_has_a_check() -> None:
    assert len(SHOWN) >= 20  # the reader works
    unknown = [f"README.md:{c.line}: {c}" for c in SHOWN if check_for(c) is None]
    assert not unknown, "README commands no test runs or checks (add one to SETUP or LIVE)"


@pytest.mark.parametrize("command", [c for c in SHOWN if check_for(c) in SETUP], ids=str)
def test_setup_command(command: Command) -> None:
    prefix = check_for(command)
    assert prefix is not None
    SETUP[prefix](command)


async def test_the_readme_walkthrough_on_the_embedded_default(tmp_path: Path) -> None:
    """The README's daemon commands, in the README's order, against `remediator run`."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    port = free_port()
    process = DaemonProcess(["--embedded-port", str(port)], tmp_path)
    daemon = Daemon(process, f"nats://127.0.0.1:{port}")
    await asyncio.to_thread(process.start, True, 60)
    try:
        for command in SHOWN:
            prefix = check_for(command)
            if prefix in LIVE:
                await LIVE[prefix](daemon, command)
    finally:
        code = await asyncio.to_thread(process.stop)
    assert code == 0, process.logs()
    assert "Traceback" not in process.logs()


# --- what the README shows besides commands --------------------------------------------------


def test_the_first_rule_is_the_shipped_one() -> None:
    yaml_blocks = [text for language, _, text in blocks(README.read_text()) if language == "yaml"]
    shipped = (ROOT / "rules" / "high-cpu.yaml").read_text()
    assert yaml_blocks and yaml_blocks[0].strip() == shipped[shipped.index("rules:") :].strip()


def test_the_history_example_has_the_real_columns() -> None:
    from remediator.offline.history_view import table

    (example,) = [text for language, _, text in blocks(README.read_text()) if language == ""]
    assert example.splitlines()[0].split() == table([], 0.0).split()
    assert re.search(r"ALERTS:1\s", example)  # event ids are stream:sequence


def test_links_point_to_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_it_stays_a_first_ten_minutes() -> None:
    assert len(README.read_text().splitlines()) <= 200
    assert "§" not in README.read_text()
