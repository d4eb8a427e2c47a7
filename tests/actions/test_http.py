"""The http action against real servers: capped reads and redirects (issue 13)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from remediator.actions.base import StepContext
from remediator.actions.http import HTTPAction
from remediator.errors import StepError
from tests.support.hostile import HostileTarget
from tests.support.http_target import HttpTarget

CONTEXT = StepContext(event_id="e", trace_id="t" * 32, rule="r", step="s", timeout=10)
SECRET_HEADERS = {"Authorization": "Bearer tok", "X-Token": "s3cret", "Cookie": "a=b"}


@pytest.fixture
async def hostile() -> AsyncIterator[HostileTarget]:
    target = await HostileTarget(huge_mb=50).start()
    yield target
    await target.stop()


@pytest.fixture
async def action() -> AsyncIterator[HTTPAction]:
    action = HTTPAction()
    yield action
    await action.close()


async def test_a_huge_answer_is_read_only_up_to_the_cap(
    action: HTTPAction, hostile: HostileTarget
) -> None:
    output = await action.run({"url": f"{hostile.url}/huge"}, CONTEXT)
    assert output["status"] == 200 and len(str(output["body"])) == 64 * 1024
    assert hostile.sent_bytes < 50 * 1024 * 1024


async def test_redirects_are_not_followed_by_default(
    action: HTTPAction, hostile: HostileTarget, http_target: HttpTarget
) -> None:
    with pytest.raises(StepError, match="HTTP 302"):
        await action.run(
            {"method": "POST", "url": f"{hostile.url}/to/{http_target.url}/x", "json": {}},
            CONTEXT,
        )
    assert http_target.received == []


async def test_a_redirect_to_another_origin_carries_no_secret_header(
    action: HTTPAction, hostile: HostileTarget, http_target: HttpTarget
) -> None:
    request = {
        "url": f"{hostile.url}/to/{http_target.url}/elsewhere",
        "headers": SECRET_HEADERS,
        "follow_redirects": True,
    }
    output = await action.run(request, CONTEXT)
    assert output["status"] == 200
    (received,) = http_target.received
    assert received.path == "/elsewhere"
    assert not set(SECRET_HEADERS) & set(received.headers)
    assert received.headers["Idempotency-Key"] == "e:r:s"
    assert "Authorization" in hostile.requests[0][1]  # the first origin did get them


async def test_a_redirect_within_the_origin_keeps_the_headers(
    action: HTTPAction, hostile: HostileTarget
) -> None:
    request = {
        "url": f"{hostile.url}/to/{hostile.url}/same",
        "headers": SECRET_HEADERS,
        "follow_redirects": True,
    }
    await action.run(request, CONTEXT)
    path, headers = hostile.requests[-1]
    assert path == "/same" and headers["X-Token"] == "s3cret"
