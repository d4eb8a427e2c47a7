"""Mistyped flags and values on the command line: argparse's one-line usage error and exit 2,
never a traceback (issue 22 c), checked where the parsing happens, with no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator.cli import main
from remediator.errors import ConfigError
from remediator.settings import Settings


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "--log-level", "verbose"], "argument --log-level: invalid choice: 'verbose'"),
        (["status", "--max-actions", "lots"], "argument --max-actions: expected N or N/WINDOW"),
        (["run", "--max-actions", "5/soon"], "argument --max-actions: expected N or N/WINDOW"),
        (["history", "--status", "succeded"], "argument --status: invalid choice: 'succeded'"),
    ],
)
def test_a_bad_flag_value_is_a_usage_error(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_log_level_is_upper_or_lower_case() -> None:
    assert Settings.load({"log_level": "DEBUG"}, {}).log_level == "debug"


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"REMEDIATOR_LOG_LEVEL": "loud"}, "log_level (REMEDIATOR_LOG_LEVEL): expected one of"),
        ({"REMEDIATOR_LOG_FORMAT": "xml"}, "log_format (REMEDIATOR_LOG_FORMAT): expected one of"),
        ({"REMEDIATOR_CONCURRENCY": "lots"}, "not an integer: 'lots'"),
    ],
)
def test_a_bad_setting_from_the_environment_names_it(environ: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.load({}, environ)
    assert said in str(refused.value)


def test_a_bad_flag_value_names_the_flag_not_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"embedded_port \(--embedded-port\): must be at least"):
        Settings.load({"embedded_port": "0"}, {})
    with pytest.raises(ConfigError, match=r"nats_url \(--nats\)"):
        Settings.load({"nats_url": " , "}, {})
    config = tmp_path / "remediator.yaml"
    config.write_text("concurrency: lots\n")
    with pytest.raises(ConfigError, match=rf"concurrency \(in {config}\): not an integer"):
        Settings.load({"config": str(config)}, {})


def test_run_where_there_are_no_rules_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REMEDIATOR_RULES", raising=False)
    assert main(["run"]) == 2
    assert "pass --rules PATH" in capsys.readouterr().err
