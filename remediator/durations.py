"""Durations as rule files and settings write them: `500ms`, `30s`, `5m`, `1h`, `1d`, or seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds for `value`; ValueError with the accepted forms when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return _finite(float(value), value)
    if isinstance(value, str) and (found := _PATTERN.match(value)):
        return _finite(float(found.group(1)) * _UNITS[found.group(2) or "s"], value)
    raise ValueError(f"not a duration: {value!r} (use 500ms, 30s, 5m, 1h, 1d or seconds)")


def _finite(seconds: float, value: object) -> float:
    """NaN and infinity are no duration (JSON's NaN, or 400 digits): refused, not kept."""
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {value!r}")
    return seconds
