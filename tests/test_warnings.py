"""Warnings: the project's own fail a test, a dependency's deprecation never does, and the
daemon's log stays JSON lines whatever a dependency warns about.

A new cryptography release once turned every SSH test red (its DSA deprecation, raised as
asyncssh imports) and printed ten lines of Python text into the daemon's JSON log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning


def test_our_own_deprecation_fails_a_test() -> None:
    with pytest.raises(DeprecationWarning):
        warnings.warn("a project API used the old way", DeprecationWarning, stacklevel=1)
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old", DeprecationWarning, "engine.py", 1, module="remediator.x")


def test_a_dependencys_deprecation_does_not() -> None:
    # Attributed to the dependency's module, as a warning raised inside it is.
    warnings.warn_explicit("old", DeprecationWarning, "dep.py", 1, module="somedependency")
    warnings.warn_explicit(
        "DSA is deprecated", CryptographyDeprecationWarning, "dsa.py", 39, module="asyncssh"
    )


def test_other_warnings_still_fail() -> None:
    with pytest.raises(UserWarning):
        warnings.warn_explicit("odd", UserWarning, "dep.py", 1, module="somedependency")


DAEMON_LOG = """
import warnings
from remediator.logs import configure
configure("json", "info")
import asyncssh  # cryptography warns of DSA's deprecation as asyncssh imports
warnings.warn_explicit("not ours", DeprecationWarning, "/elsewhere/dep.py", 3, module="dep")
warnings.warn("something odd", RuntimeWarning, stacklevel=1)
"""


def test_the_daemon_log_stays_json_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", DAEMON_LOG],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert "DSA" not in done.stderr and "not ours" not in done.stderr
    assert [r["level"] for r in records] == ["warning"]
    assert "RuntimeWarning: something odd" in records[0]["message"]
