"""An event's JSON is read by orjson where it can and by `json` where it refuses (issue
25): the payload is what `json.loads` gives, for inputs either side of that line."""

from __future__ import annotations

import json
import math

import pytest

from remediator.engine.events import decode_event
from remediator.errors import EventError

SAME = [
    b'{"labels": {"host": "web-1"}, "value": 95.5, "ok": true, "none": null}',
    b'{"big": 123456789012345678901234567890}',  # past 64 bits: orjson makes it a float
    b'{"u64": 18446744073709551615, "i64": -9223372036854775808}',
    b'{"big": [1, 98765432109876543210]}',
    '{"utf16": "é"}'.encode("utf-16"),  # json detects the encoding
    b'{"lone": "\\ud800"}',  # a lone surrogate
    b'{"a": 1, "a": 2}',  # the last key wins, as in json
]


def decode(data: bytes) -> object:
    return decode_event("s", {}, data, None, lambda: "t").payload


@pytest.mark.parametrize("data", SAME)
def test_the_payload_is_what_json_loads_gives(data: bytes) -> None:
    assert decode(data) == json.loads(data)


def test_nan_literals_read_as_json_reads_them() -> None:
    payload = decode(b'{"v": NaN}')
    assert isinstance(payload, dict) and math.isnan(payload["v"])


@pytest.mark.parametrize("data", [b'{"v": ', b'{"v": ' + b"[" * 1100 + b"]" * 1100 + b"}"])
def test_what_neither_reads_is_invalid_json(data: bytes) -> None:
    """Cut short, or nested deeper than either reads (orjson stops at 1,024 levels)."""
    with pytest.raises(EventError) as caught:
        decode(data)
    assert caught.value.reason == "invalid_json"
