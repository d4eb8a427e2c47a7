"""Log lines: JSON on stderr (or text for humans), secrets masked in every one.

`configure` is called by the CLI only. Modules log with `%` arguments and
pass `trace_id`, `event_id` and `rule` as `extra`, which land as fields.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from remediator.templating import Secrets

_FIELDS = ("trace_id", "event_id", "rule")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({f: getattr(record, f) for f in _FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{f}={getattr(record, f)}" for f in _FIELDS if hasattr(record, f))
        return f"{text} [{ids}]" if ids else text


class MaskSecrets(logging.Formatter):
    """Formats with `inner`, then replaces every secret handed out so far with ***.

    Masking the finished line covers the message, its fields and any traceback.
    """

    def __init__(self, inner: logging.Formatter, secrets: Secrets) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return str(self.secrets.mask(self.inner.format(record)))


def configure(fmt: str, level: str, secrets: Secrets | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = TextFormatter() if fmt == "text" else JsonFormatter()
    if secrets is not None:
        formatter = MaskSecrets(formatter, secrets)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
