"""Strict JSON text: what every result, record and dead letter is written as.

`NaN` and `Infinity` are not JSON, so they are written as strings ("nan", "inf")
instead of text that strict consumers reject; a value JSON has no form for is
written as its `str`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping


def dumps(value: object) -> str:
    """Strict JSON: non-finite floats become strings, anything else unknown its `str`."""
    try:
        return json.dumps(value, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), default=str, allow_nan=False)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
