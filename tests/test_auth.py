"""`Access`: which token may do what, on which listener, and what the config may say."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from remediator.errors import ConfigError
from remediator.http.auth import Access
from remediator.rules.secrets import Secrets


def request(token: str | None = None) -> web.Request:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return make_mocked_request("GET", "/api/status", headers=headers)


def access(loopback: bool = True, **environ: str) -> Access:
    tokens = [
        {"name": "dash", "token": "v-token", "role": "viewer"},
        {"name": "bot", "token": "secret(OPS)", "role": "operator"},
    ]
    return Access.from_config({"tokens": tokens}, Secrets(environ), loopback=loopback)


def test_roles() -> None:
    both = access(OPS="o-token")
    assert both.require(request("v-token"), "viewer") == "dash"
    assert both.require(request("o-token"), "operator") == "bot"
    assert both.require(request("o-token"), "viewer") == "bot"
    with pytest.raises(web.HTTPForbidden):
        both.require(request("v-token"), "operator")
    for wrong in (None, "o-tokenx", "secret(OPS)"):
        with pytest.raises(web.HTTPUnauthorized):
            both.require(request(wrong), "viewer")


def test_tokens_are_masked_like_secrets() -> None:
    secrets = Secrets({"OPS": "o-token"})
    tokens = [{"name": "a", "token": "lit-token"}, {"name": "b", "token": "secret(OPS)"}]
    Access.from_config({"tokens": tokens}, secrets, loopback=True)
    assert secrets.mask("lit-token o-token") == "*** ***"


def test_no_token_reads_only_on_loopback() -> None:
    none = Access.from_config({}, Secrets({}), loopback=True)
    assert none.require(request(), "viewer") == "anonymous"
    with pytest.raises(web.HTTPForbidden) as refused:
        none.require(request(), "operator")
    assert "api: {tokens:" in str(refused.value.text)
    exposed = Access.from_config({}, Secrets({}), loopback=False)
    with pytest.raises(web.HTTPForbidden):
        exposed.require(request(), "viewer")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"token": "t"}, "name"),
        ({"name": "n", "token": "t", "role": "admin"}, "viewer or operator"),
        ({"name": "n"}, "token: required"),
        ({"name": "n", "token": "secret(MISSING)"}, "MISSING"),
    ],
)
def test_config_errors_name_the_place(item: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=r"api\.tokens\[0\]") as error:
        Access.from_config({"tokens": [item]}, Secrets({}), loopback=True)
    assert message in str(error.value)
