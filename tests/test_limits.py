"""Size limits, strict JSON, secret masking in every encoding, the regex policy and the
template budget (issue 13), as units."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import jinja2
import pytest
from yarl import URL

from remediator.cli import main
from remediator.engine.events import decode_event
from remediator.engine.limits import (
    MAX_ID,
    bounded_id,
    cap_output,
    dumps,
    fit_result,
    fit_text,
)
from remediator.errors import EventError, TemplateError
from remediator.model import Delivery
from remediator.rules.conditions import build_condition
from remediator.rules.secrets import Secrets
from remediator.rules.templating import MAX_OUTPUT, Templates


def test_long_ids_are_hashed_stably_and_short_ones_kept() -> None:
    assert bounded_id("abc") == "abc"
    long = "x" * (MAX_ID + 1)
    assert bounded_id(long) == bounded_id(long) and len(bounded_id(long)) <= 64
    assert bounded_id(long) != bounded_id(long + "y")
    assert bounded_id("\ud800").startswith("sha256:")  # not encodable: hashed too


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    data = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(EventError) as caught:
        decode_event("s", {}, data, None, lambda: "t")
    assert caught.value.reason == "invalid_json"


def test_trace_and_message_ids_are_bounded_when_decoding() -> None:
    data = json.dumps({"trace_id": "t" * 10_000}).encode()
    event = decode_event("s", {"Nats-Msg-Id": "m" * 10_000}, data, None, lambda: "t")
    assert len(event.event_id) <= MAX_ID and len(event.trace_id) <= MAX_ID


def test_outputs_are_capped_after_encoding_with_a_marker() -> None:
    control = "\x01" * 20_000  # 20 KB of text, 120 KB once JSON-escaped
    capped = cap_output({"status": 200, "body": control})
    assert isinstance(capped, dict) and capped["status"] == 200
    assert capped["body"]["truncated"] is True and capped["body"]["size"] > 100_000
    assert cap_output({"status": 200}) == {"status": 200}


def test_a_result_is_shrunk_until_it_fits() -> None:
    steps = [
        {"name": f"s{i}", "output": {"body": "\x02" * 60_000}, "error": None} for i in range(5)
    ]
    body = fit_result({"event_id": "e", "steps": steps}, 50_000)
    assert len(dumps(body).encode()) <= 50_000
    assert all(s["output"]["body"]["truncated"] or s["output"]["truncated"] for s in steps)


def test_fit_text_counts_json_escapes() -> None:
    text = fit_text("\x01" * 10_000, 6_000)
    assert len(json.dumps(text)) <= 6_000 and len(text) > 900


def test_dumps_is_strict_json() -> None:
    assert dumps({"a": float("inf"), "b": [float("nan")]}) == '{"a": "inf", "b": ["nan"]}'


def test_secrets_are_masked_in_every_encoding() -> None:
    secret = "s3cr+t/Tok=en é"
    secrets = Secrets({"S": secret})
    secrets.get("S")
    forms = [
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    ]
    for form in forms:
        assert secrets.mask(f"GET http://x/?t={form} end") == "GET http://x/?t=*** end", form


@pytest.mark.parametrize(
    "pattern",
    [r"(a+)+$(?<=a)", r"(a*)*\1", r"^(\w+\s?)*$(?!x)", r"(?:x{2,3})+\Z", r"(?=(a+)+b)"],
)
def test_nested_quantifiers_re2_cannot_run_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"nests a repeat inside a repeat.*RE2 refuses it"):
        build_condition("v", "regex", pattern)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(?=x.*y)z", "repeats inside a lookaround"),
        (r"(?!a{0,50}b)", "repeats inside a lookaround"),
        (r"(x)\1a*a*b", "adjacent repeats"),
        (r"(?<=q)\d+\w+", "adjacent repeats"),
        (r"(x)\1.*\s*$", "adjacent repeats"),
    ],
)
def test_what_only_backtracking_can_run_and_blows_up_is_refused(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        build_condition("v", "regex", pattern)


@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [
        (r"(\w)\1", "xaay", True),  # a backreference: Python's re, no repeat to blow up
        (r"(?<!no )error", "no error", False),
        (r"(?<!no )error", "an error", True),
        (r"error\Z", "an error", True),
        (r"(x)\1[a-z]+\d+", "xxab12", True),  # adjacent repeats that share no character
    ],
)
def test_what_re2_cannot_run_but_is_safe_runs_with_python_re(
    pattern: str, value: str, found: bool
) -> None:
    assert build_condition("v", "regex", pattern).test(value) is found


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("(a+)+$", "a" * 5000 + "!"),
        ("a*a*a*a*a*a*b", "a" * 5000),
        (r"^(\w+\s?)*$", "word " * 2000 + "!"),
        ("error.*timeout", ("error " + "y" * 100) * 7100),  # 750 KB: quadratic for re
        (r"\s+$", " " * 750_000 + "x"),
    ],
)
def test_backtracking_blow_ups_run_in_linear_time_with_re2(pattern: str, value: str) -> None:
    """Each of these takes minutes to years with Python's re (the old engine)."""
    assert build_condition("v", "regex", pattern).test(value) is False


def test_validate_names_the_file_and_line_of_a_catastrophic_regex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n  - name: r\n    on: [a.b]\n    match:\n      v: {regex: '(?=(a+)+b)'}\n"
        "    actions:\n      - publish: {subject: x, json: {}}\n"
    )
    assert main(["validate", str(rules)]) != 0
    out = "".join(capsys.readouterr())
    assert f"{rules}:5" in out and "nests a repeat inside a repeat" in out


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 10 ** 100000000 }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ 'x' | center(100000000) }}",
        "{{ '%0*d' | format(100000000, 1) }}",
        "{{ '%100000000d' % 1 }}",
        "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
        # issue 24: each of these built ~1 GB or ran unbounded before the budget held
        "{{ '{:>900000000}'.format(1) }}",
        "x {{ '{:>900000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, '900000000') }}",
        "{{ '{0:.900000000f}'.format_map([1.0]) }}",
        "{{ (['x'*1000000]*1000)|join }}",
        "{{ ([{'a': 'x'*1000000}]*1000)|join(attribute='a') }}",
        "{{ ''.join(['x'*1000000]*1000) }}",
        "{{ ['x'*1000000]*1000 }}",  # a single expression: no output to cap
        "{{ ('x'*1000000).replace('x', 'yy') }}",
        "{{ '%(a)900000000s' % {'a': 1} }}",
        "{{ '%.900000000f' % 1.0 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set l = range(100000)|list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set _ = ns.l.extend(ns.l) %}"
        "{% endfor %}{{ ns.l|length }}",
    ],
)
def test_template_bombs_fail_within_the_budget(source: str) -> None:
    template = Templates(Secrets({})).compile(source, rule="r", field="f")
    with pytest.raises(TemplateError, match="budget"):
        template.render({})


def test_templates_within_the_budget_still_render() -> None:
    source = "{{ 'ab' * 3 }}-{{ 2 ** 10 }}-{{ 6 * 7 }}-{{ 7 % 4 }}-{{ '%5.1f' % 2.25 }}"
    template = Templates(Secrets({})).compile(source)
    assert template.render({}) == "ababab-1024-42-3-  2.2"
    assert MAX_OUTPUT >= 1024 * 1024
    loops = (
        "{% for i in range(3) %}{{ i ~ '/' ~ loop.length }}{% else %}none{% endfor %} "
        "{{ 'a' ~ 1 ~ ('b' ~ 2) }} {{ ['a', 'b']|join(',') }} {{ '{:>4}|{:.2f}'.format(1, 2) }} "
        "{% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %} "
        "{{ 'a-b'.replace('-', '+') }}"
    )
    assert Templates(Secrets({})).compile(loops).render({}) == (
        "0/31/32/3 a1b2 a,b    1|2.00 x=1 a+b"
    )
    assert Templates(Secrets({})).compile("{{ 'x' ~ event.n }}").render({"event": {"n": 5}}) == (
        "x5"
    )


def test_range_is_capped_by_the_sandbox() -> None:
    template = Templates(Secrets({})).compile("{{ range(10 ** 9) | list | length }}")
    with pytest.raises((TemplateError, jinja2.exceptions.SecurityError, OverflowError)):
        template.render({})


def test_a_generated_trace_id_is_the_same_for_every_delivery() -> None:
    """A random one changed with a redelivery and split the event's logs (issue 22 c)."""
    data = b'{"host": "a"}'
    first, again = (
        decode_event("s", {}, data, Delivery(stream="ALERTS", sequence=7, num_delivered=n))
        for n in (1, 2)
    )
    other = decode_event("s", {}, data, Delivery(stream="ALERTS", sequence=8, num_delivered=1))
    assert first.trace_id == again.trace_id and len(first.trace_id) == 32
    assert other.trace_id != first.trace_id
    assert decode_event("s", {"trace-id": "t-1"}, data, None).trace_id == "t-1"


@pytest.mark.parametrize(
    "secret",
    ["x y", "a=b|c", "p%41ss", 'q"u\\o', "é€", "a+b&c#d", "a;b,c:d@e$f!g", "s3cr+t/Tok=en"],
)
def test_secrets_are_masked_in_every_form_the_http_client_writes_in_a_url(secret: str) -> None:
    """yarl (aiohttp's URLs) encodes a character or not depending on the URL part, writes a
    space as `+` in a query, and decodes `%41` to `A`; error messages quote its URLs."""
    secrets = Secrets({"S": secret})
    secrets.get("S")
    urls = [
        URL(f"http://h/p/{secret}/x?t={secret}&u=1"),
        URL("http://h/p").with_query({"t": secret}),
        URL("http://h/p?a=1").update_query({"t": secret}),
        URL("http://h/").joinpath(secret),
    ]
    for url in urls:
        masked = str(secrets.mask(f"GET {url}: HTTP 500"))
        rest = masked.replace("***", " ")
        for decode in (urllib.parse.unquote, urllib.parse.unquote_plus, str):
            assert secret not in decode(rest), (str(url), masked)
        assert "pAss" not in rest, (str(url), masked)


@pytest.mark.parametrize("secret", ['q"u\\o', "é€ü", "\u00a0nbsp", "tab\there"])
def test_secrets_are_masked_in_json_escaped_text(secret: str) -> None:
    secrets = Secrets({"S": secret})
    secrets.get("S")
    for text in (json.dumps({"m": f"a {secret} b"}), json.dumps(secret, ensure_ascii=False)):
        assert secret not in str(secrets.mask(text)) and "***" in str(secrets.mask(text))


def test_masking_a_letter_secret_is_case_sensitive() -> None:
    secrets = Secrets({"S": "abc"})
    secrets.get("S")
    assert secrets.mask("abc ABC %61bc") == "*** ABC ***"
