"""The listener's guard: the `Host` check against DNS rebinding where no token protects a
route, and the security headers on every answer (issue 24)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from remediator.engine.resultlog import ResultLog
from remediator.http.auth import Access, is_loopback
from remediator.http.consolefiles import mount_console
from remediator.http.guard import SECURITY_HEADERS, HostCheck
from remediator.http.listener import Listener
from remediator.http.results import ResultsAPI
from remediator.rules.secrets import Secrets
from remediator.settings import Settings


def check(http: str = "127.0.0.1:9464", public_url: str | None = None) -> HostCheck:
    return HostCheck.build(Settings(http=http, public_url=public_url), True, True)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("LOCALHOST:9464", True),
        ("localhost.:9464", True),
        ("127.0.0.1:9464", True),
        ("127.3.4.5", True),
        ("[::1]:9464", True),
        ("10.0.0.7:9464", True),  # the address the connection arrived at
        ("10.0.0.8:9464", False),
        ("console.example.com", True),  # public_url's host
        ("evil.example:9464", False),
        ("127.0.0.1.evil.example", False),
        ("127.evil.example", False),
        ("localhost.evil.example", False),
        ("0.0.0.0:9464", False),
        ("", False),
    ],
)
def test_only_names_of_the_listener_itself_are_allowed(host: str, allowed: bool) -> None:
    guard = check("0.0.0.0:9464", "https://Console.Example.com/remediator")
    assert guard.allows(host, "10.0.0.7") is allowed


def test_loopback_listeners_are_addresses_and_localhost_not_names_that_look_like_them() -> None:
    assert is_loopback("127.0.0.1:9464") and is_loopback("127.9.9.9:1")
    assert is_loopback("[::1]:9464") and is_loopback("localhost:9464")
    assert not is_loopback("127.evil.example:9464") and not is_loopback("0.0.0.0:9464")


def test_which_paths_need_the_check() -> None:
    open_api = HostCheck(frozenset({"localhost"}), api_open=True, webhook_open=False)
    assert open_api.needed("/api/results") and open_api.needed("/")
    assert not open_api.needed("/webhook/alertmanager")
    assert not any(open_api.needed(p) for p in ("/healthz", "/readyz", "/metrics"))
    closed = HostCheck(frozenset({"localhost"}), api_open=False, webhook_open=True)
    assert closed.needed("/webhook/alertmanager") and not closed.needed("/api/results")


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    listener = Listener(CollectorRegistry(), lambda: True, check=check())
    access = Access.from_config({}, Secrets({}), loopback=True)
    ResultsAPI(ResultLog(), lambda: ["r"], access).mount(listener.app)
    mount_console(listener.app)
    async with TestClient(TestServer(listener.app)) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/api/results", "/api/overview", "/console/app.js"])
async def test_a_rebound_name_is_refused_and_the_listeners_own_served(
    client: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    refused = await client.get(path, headers={"Host": "attacker.example:9464"})
    assert refused.status == 403
    assert "DNS rebinding" in (await refused.json())["error"]
    for host in ("127.0.0.1", "localhost:9464"):
        assert (await client.get(path, headers={"Host": host})).status == 200
    assert (await client.get("/healthz", headers={"Host": "any.example"})).status == 200


@pytest.mark.parametrize("path", ["/", "/api/results", "/api/results/nope", "/api/nothing"])
async def test_every_answer_carries_the_security_headers(
    client: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    for host in ("localhost", "attacker.example"):
        response = await client.get(path, headers={"Host": host})
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, host, name)
    assert SECURITY_HEADERS["Content-Security-Policy"].startswith("default-src 'self'")
