"""The dead letter of a message: what it was, why it could not be processed, bounded.

Always small enough to store: the data is cut (its `size` and `sha256` say
what it was; base64 when it is not text), and so are the headers and the
error.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from remediator.engine.limits import cap_text, fit_text
from remediator.model import dumps

if TYPE_CHECKING:
    from remediator.nats.transport import Inbound

DEAD_LETTER_DATA_CAP = 64 * 1024  # bytes of the original data kept in a dead letter
_HEADER_VALUE_CAP = 1024


def dead_letter_body(
    inbound: Inbound, reason: str, error: str, event_id: str, max_payload: int
) -> bytes:
    data = inbound.data
    body: dict[str, object] = {
        "reason": reason,
        "error": cap_text(error),
        "subject": inbound.subject,
        "headers": _capped_headers(inbound.headers),
        "event_id": event_id,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    cap = min(DEAD_LETTER_DATA_CAP, max_payload // 4)
    try:
        body["data"] = fit_text(data[: cap + 4].decode(), cap)
    except UnicodeDecodeError:
        body["data"] = base64.b64encode(data[: cap * 3 // 4]).decode()
        body["data_encoding"] = "base64"
    body["data_truncated"] = len(data) > cap or len(json.dumps(body["data"])) > cap
    if inbound.delivery is not None:
        d = inbound.delivery
        body["delivery"] = {
            "stream": d.stream,
            "sequence": d.sequence,
            "num_delivered": d.num_delivered,
        }
    return dumps(body).encode()


def _capped_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """At most 64 headers, each key and value cut at 1 KiB, for a dead letter."""
    items = list(headers.items())[:64]
    return {cap_text(k, _HEADER_VALUE_CAP): cap_text(v, _HEADER_VALUE_CAP) for k, v in items}
