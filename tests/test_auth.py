"""`Access`: which token may do what, on which listener, and what the config may say."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from remediator.daemon import Daemon
from remediator.errors import ConfigError
from remediator.http.auth import Access, bearer
from remediator.rules.secrets import Secrets
from remediator.settings import Settings


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


@pytest.mark.parametrize("secret", ["", "\n", " ", "\u00a0", "\t\u2003"])
def test_an_empty_or_blank_token_is_refused_at_start_up(secret: str) -> None:
    tokens = [{"name": "ops", "token": "secret(OPS_TOKEN)", "role": "operator"}]
    with pytest.raises(ConfigError, match=r"api\.tokens\[0\]\.token: .*empty or only whitespace"):
        Access.from_config({"tokens": tokens}, Secrets({"OPS_TOKEN": secret}), loopback=True)


def test_a_token_file_holding_a_newline_is_refused(tmp_path: Path) -> None:
    (tmp_path / "OPS_TOKEN").write_text("\n\n")
    tokens = [{"name": "ops", "token": "secret(OPS_TOKEN)", "role": "operator"}]
    with pytest.raises(ConfigError, match="empty or only whitespace"):
        Access.from_config({"tokens": tokens}, Secrets({}, tmp_path), loopback=True)


def test_the_header_is_compared_as_bytes() -> None:
    """A token is what the header's bytes say: no Unicode whitespace is stripped from it."""
    tokens = [{"name": "ops", "token": "secret(OPS)", "role": "operator"}]
    nbsp = Access.from_config({"tokens": tokens}, Secrets({"OPS": "tok"}), loopback=True)
    for wrong in ("tok\u00a0", "\u00a0tok", "tok\u2003", "\u00a0"):
        with pytest.raises(web.HTTPUnauthorized):
            nbsp.require(request(wrong), "operator")
    assert nbsp.require(request(" tok\t"), "operator") == "ops"
    assert bearer("Bearer \u00a0") == b"\xc2\xa0"
    assert bearer("Bearer  \t") is None


@pytest.mark.parametrize("token", ["", "\n", "\u00a0", "secret(HOOK)"])
def test_an_empty_webhook_token_is_refused_at_start_up(token: str) -> None:
    settings = Settings.load({"webhook_token": token}, {"HOOK": " "})
    with pytest.raises(
        ConfigError,
        match=r"webhook_token \(REMEDIATOR_WEBHOOK_TOKEN\): the token is empty or only whitespace",
    ):
        Daemon(settings, {"HOOK": " "})


def test_the_webhook_token_may_be_a_secret() -> None:
    settings = Settings.load({"webhook_token": "secret(HOOK)"}, {})
    daemon = Daemon(settings, {"HOOK": "hook-token"})
    assert daemon.webhook_token == "hook-token"
    assert daemon.secrets.mask("x hook-token") == "x ***"
