"""Log lines: JSON on stderr (or text for humans), secrets masked in every one.

`configure` is called by the CLI only. Modules log with `%` arguments and
pass `trace_id`, `event_id` and `rule` as `extra`, which land as fields.

The daemon also binds the ids of the event a task is processing
(`bind_event`), so every line logged while that event is handled carries
them, including lines from code that knows nothing of the event (a step
runner's retry warning, an action's connection trouble). Explicit `extra`
fields win over the binding.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import warnings
from asyncio import _get_running_loop as asyncio_loop
from contextvars import ContextVar
from pathlib import Path
from typing import TextIO

import orjson

from remediator.rules.secrets import Secrets

_FIELDS = ("trace_id", "event_id", "rule")

# Per asyncio task (each event is handled in its own task), not process-wide state.
_EVENT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("remediator_event", default=())


def bind_event(trace_id: str, event_id: str) -> None:
    """Tag every later log line of the current task (and tasks it starts) with these ids."""
    _EVENT.set((("trace_id", trace_id), ("event_id", event_id)))


class EventFields(logging.Filter):
    """Adds the bound event's ids to a record that does not carry its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _EVENT.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; written by orjson (a line per fired rule: json's own
    encoder was a third of it), by json where orjson refuses (a lone surrogate)."""

    _second = -1  # the whole second `_stamp` was made for
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({f: getattr(record, f) for f in _FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted (and masked) beforehand by MaskSecrets
            line["exception"] = record.exc_text
        try:
            return orjson.dumps(line, default=str).decode()
        except orjson.JSONEncodeError:
            return json.dumps(line, default=str)

    def _time(self, created: float) -> str:
        """ISO 8601 in UTC, to the microsecond; the date and time of day made once a second."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((created - second) * 1_000_000):06d}+00:00"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{f}={getattr(record, f)}" for f in _FIELDS if hasattr(record, f))
        return f"{text} [{ids}]" if ids else text


class MaskSecrets(logging.Formatter):
    """Replaces every secret handed out so far with *** in a record, then formats it.

    The message, the fields and the traceback are masked before `inner` formats them:
    after JSON escaping, a secret holding `"`, `\\` or a non-ASCII character would no
    longer be found as it was handed out. The finished line is masked once more, for
    what the formatter adds itself.
    """

    def __init__(self, inner: logging.Formatter, secrets: Secrets) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        if not self.secrets.known:  # none handed out yet: nothing to look for
            return self.inner.format(record)
        return str(self.secrets.mask(self.inner.format(self._masked(record))))

    def _masked(self, record: logging.LogRecord) -> logging.LogRecord:
        mask = self.secrets.mask
        masked = logging.makeLogRecord(dict(record.__dict__))
        masked.msg, masked.args = str(mask(record.getMessage())), None
        for name in _FIELDS:
            if hasattr(record, name):
                setattr(masked, name, mask(str(getattr(record, name))))
        if record.exc_info:
            masked.exc_text = str(mask(self.inner.formatException(record.exc_info)))
            masked.exc_info = None
        elif record.exc_text:
            masked.exc_text = str(mask(record.exc_text))
        if record.stack_info:
            masked.stack_info = str(mask(record.stack_info))
        return masked


class TurnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines of one event-loop turn together.

    A result's INFO line written alone cost a system call per fired event. Lines
    logged on the running loop are kept until the loop's next turn (`call_soon`), so a
    batch of events writes its lines at once and no line waits longer than a turn;
    lines from worker threads (which run no loop), or with no loop running, are
    written at once, after whatever was kept, so the order holds.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._kept: list[str] = []
        self._due = False  # a write is scheduled on the loop

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._kept.append(line)
        loop = asyncio_loop()  # None in a worker thread: those threads run no loop
        if loop is None:
            self._write()
        elif not self._due:
            self._due = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._due = False
            self._write()

    def _write(self) -> None:
        if self._kept:
            text = "\n".join(self._kept) + "\n"
            self._kept.clear()
            self.stream.write(text)
            self.stream.flush()


def configure(fmt: str, level: str, secrets: Secrets | None = None) -> None:
    handler = TurnHandler(sys.stderr)
    formatter: logging.Formatter = TextFormatter() if fmt == "text" else JsonFormatter()
    if secrets is not None:
        formatter = MaskSecrets(formatter, secrets)
    handler.setFormatter(formatter)
    handler.addFilter(EventFields())
    # What no line shows, not gathered for every record (the logging docs' advice: the
    # caller's frame walk alone was a third of a result line's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # asyncssh logs every command line it runs at INFO: arguments may carry event data.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    quiet_dependency_warnings()


def quiet_dependency_warnings() -> None:
    """Keep a dependency's deprecation out of the operator's log, and every warning JSON.

    A library telling its users about a future removal (cryptography's DSA notice, raised
    as asyncssh imports) is nothing an operator can act on, and Python would print it as
    ten lines of text into a JSON log stream. Every other warning, the project's own
    included, becomes one log record in the configured format.
    """
    warnings.showwarning = _log_warning


_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    ours = str(Path(filename).resolve()).startswith(_PACKAGE_DIR)
    # By name, so cryptography's own category (a UserWarning) is recognised without importing it.
    if not ours and "Deprecation" in category.__name__:
        return
    logging.getLogger("py.warnings").warning(
        "%s: %s (%s:%d)", category.__name__, message, filename, lineno
    )
