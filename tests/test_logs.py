"""Log lines: the ids bound to the task handling an event, both formats, and masking."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from remediator.logs import (
    EventFields,
    JsonFormatter,
    MaskSecrets,
    TextFormatter,
    TurnHandler,
    bind_event,
)
from remediator.rules.secrets import Secrets


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO]]]:
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(EventFields())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def lines(handler: logging.StreamHandler[io.StringIO]) -> list[dict[str, object]]:
    return [json.loads(line) for line in handler.stream.getvalue().splitlines()]


async def test_ids_bound_in_a_task_reach_its_lines_and_no_other_tasks(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(JsonFormatter())

    async def handle(n: int) -> None:
        bind_event(f"trace-{n}", f"evt-{n}")
        await asyncio.sleep(0)  # interleave the two tasks
        logger.info("step failed", extra={"rule": "r"})
        await asyncio.gather(asyncio.create_task(child()))  # tasks it starts inherit the ids

    async def child() -> None:
        logger.warning("from a child task")

    await asyncio.gather(handle(1), handle(2))
    logger.info("not about an event")

    by_message = lines(handler)
    assert {(r["trace_id"], r["event_id"]) for r in by_message if "trace_id" in r} == {
        ("trace-1", "evt-1"),
        ("trace-2", "evt-2"),
    }
    assert [r["message"] for r in by_message if "trace_id" not in r] == ["not about an event"]
    assert sum(r["message"] == "from a child task" for r in by_message) == 2
    assert all(r["rule"] == "r" for r in by_message if r["message"] == "step failed")


async def test_explicit_fields_win_and_text_format_shows_the_ids(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(MaskSecrets(TextFormatter(), Secrets({}, known={"hunter2"})))

    async def handle() -> None:
        bind_event("trace-1", "evt-1")
        logger.info("connect nats://bob:hunter2@nats:4222", extra={"event_id": "explicit"})

    await asyncio.create_task(handle())

    text = handler.stream.getvalue()
    assert "trace_id=trace-1 event_id=explicit" in text
    assert "hunter2" not in text and "bob:***@nats" in text


@pytest.mark.parametrize("secret", ['q"u\\o', "é€ü", "\u00a0nbsp"])
def test_secrets_are_masked_before_json_escaping(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]], secret: str
) -> None:
    """JSON escapes `"`, `\\` and non-ASCII: a mask run on the finished line missed them."""
    logger, handler = captured
    secrets = Secrets({"S": secret})
    secrets.get("S")
    handler.setFormatter(MaskSecrets(JsonFormatter(), secrets))
    try:
        raise ValueError(f"bad token {secret}")
    except ValueError:
        logger.exception("call %s failed", f"http://h/?t={secret}", extra={"rule": secret})
    (line,) = lines(handler)
    assert secret not in json.dumps(line, ensure_ascii=False)
    assert line["message"] == "call http://h/?t=*** failed" and line["rule"] == "***"
    assert "bad token ***" in str(line["exception"])


class CountingStream(io.StringIO):
    """Counts the writes that reach it: one per system call, on a real stream."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_the_lines_of_one_loop_turn_are_written_together_and_in_order() -> None:
    stream = CountingStream()
    handler = TurnHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs.turn")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for n in range(50):
            logger.info("result %d", n)
        assert stream.getvalue() == ""  # kept until the loop's next turn
        await asyncio.sleep(0)
        assert stream.writes == 1
        # From a worker thread: at once, after what the loop kept, so the order holds.
        logger.info("kept")
        await asyncio.to_thread(logger.warning, "from a thread")
        messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
        assert messages == [f"result {n}" for n in range(50)] + ["kept", "from a thread"]
    finally:
        logger.removeHandler(handler)
        handler.close()
