"""Size limits on everything that crosses NATS: ids, step outputs, results, dead letters.

A NATS server refuses a message whose headers plus payload exceed its
`max_payload` (1 MB by default), and nats-py then closes the connection for
good; a result or dead letter that cannot be stored makes an event retry (and
its steps re-run) forever. So every size is bounded before it is sent:

- ids (`Nats-Msg-Id`, event and trace ids) longer than `MAX_ID` characters are
  replaced by `sha256:` and the first 32 hex digits of their SHA-256: still
  stable, so deduplication keeps working, and always short;
- a step output whose JSON encoding exceeds `OUTPUT_JSON_CAP` bytes becomes
  `{"truncated": true, "size": N, "sha256": ..., "preview": ...}`;
- a result that would still exceed its budget has its largest outputs and error
  texts cut further, each marked `truncated`, until it fits.

JSON is strict everywhere: `NaN` and `Infinity` are not JSON, so they are sent as
strings ("nan", "inf") instead of emitting text strict consumers reject.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from remediator.model import Result
from remediator.strictjson import dumps

MAX_ID = 256  # characters kept of an id before it is hashed
OUTPUT_JSON_CAP = 64 * 1024  # bytes of one step output, JSON-encoded
ERROR_CAP = 4 * 1024  # bytes of one error text in a result
PREVIEW = 1024  # characters of a truncated output kept as a preview
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default max_payload
HEADER_ROOM = 4 * 1024  # bytes reserved for the headers of a message we publish


def bounded_id(value: str, limit: int = MAX_ID) -> str:
    """`value`, or a stable short digest of it when it is long or not valid UTF-8 text."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return "sha256:" + _digest(value.encode(errors="surrogatepass"))[:32]
    if len(value) <= limit:
        return value
    return "sha256:" + _digest(value.encode())[:32]


def cap_output(value: object, cap: int = OUTPUT_JSON_CAP) -> object:
    """`value` if its JSON encoding fits `cap` bytes, else a marked summary of it."""
    text = dumps(value)
    size = len(text.encode())
    if size <= cap:
        return value
    if isinstance(value, Mapping):  # keep the small fields (`status`), cut the large ones
        share = cap // max(1, len(value))
        kept = {str(k): _one_level(v, share) for k, v in value.items()}
        if len(dumps(kept).encode()) <= cap:
            return kept
    return truncated(text, size)


def _one_level(value: object, cap: int) -> object:
    text = dumps(value)
    size = len(text.encode())
    return value if size <= cap else truncated(text, size)


def truncated(text: str, size: int) -> dict[str, object]:
    return {
        "truncated": True,
        "size": size,
        "sha256": _digest(text.encode()),
        "preview": text[: min(PREVIEW, len(text))],
    }


def cap_text(text: str, cap: int = ERROR_CAP) -> str:
    """At most `cap` bytes of `text`, cut on a character boundary and marked."""
    data = text.encode(errors="replace")
    if len(data) <= cap:
        return text
    return data[:cap].decode(errors="ignore") + f"... [truncated, {len(data)} bytes]"


def fit_text(text: str, cap: int) -> str:
    """The longest prefix of `text` whose JSON encoding (escapes included) fits `cap`."""
    while len(text) > 0 and len(json.dumps(text)) > cap:
        text = text[: max(0, len(text) * cap // len(json.dumps(text)) - 1)]
    return text


def fit_result(body: dict[str, object], limit: int) -> dict[str, object]:
    """A result body whose JSON fits `limit` bytes: cap every output, then cut the largest.

    Results are stored (completion records, the results stream); one that does not fit
    would be retried as a NATS failure and re-run every step, so it must always fit.
    """
    if isinstance(body.get("reason"), str):
        body["reason"] = cap_text(str(body["reason"]))
    steps = body.get("steps")
    if not isinstance(steps, list):
        return body
    for step in steps:
        if isinstance(step, dict):
            step["output"] = cap_output(step.get("output"))
            if isinstance(step.get("error"), str):
                step["error"] = cap_text(step["error"])
    while len(dumps(body).encode()) > limit:
        largest = _largest_output(steps)
        if largest is None:
            break
        step = steps[largest]
        text = dumps(step["output"])
        step["output"] = {"truncated": True, "size": len(text.encode())}
    if len(dumps(body).encode()) > limit:  # many steps of errors: keep only statuses
        for step in steps:
            if isinstance(step, dict) and step.get("error"):
                step["error"] = cap_text(str(step["error"]), 256)
        body["steps_truncated"] = True
    return body


def _largest_output(steps: list[object]) -> int | None:
    best, best_size = None, 64  # outputs already this small are not worth cutting
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        output = step.get("output")
        if isinstance(output, dict) and output.get("truncated") and "preview" not in output:
            continue
        size = len(dumps(output).encode())
        if size > best_size:
            best, best_size = index, size
    return best


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fitted(result: Result, limit: int) -> tuple[Result, bytes]:
    """`result`, with outputs cut when its JSON would not fit `limit` bytes (it must be
    storable: a result that cannot be stored would re-run every step), and that JSON."""
    data = result.encode()
    if len(data) <= limit:
        return result, data
    cut = Result.from_json(fit_result(result.to_json(), limit))
    return cut, cut.encode()
