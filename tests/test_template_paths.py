"""Plain dotted reads (`{{ event.labels.host }}`) take a fast path that must give exactly
what Jinja gives: the same values, and the same errors where Jinja raises."""

from __future__ import annotations

import jinja2
import pytest

from remediator.errors import TemplateError
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates, renders_instantly

FAST = Templates(Secrets({}))
CONTEXT: dict[str, object] = {
    "event": {
        "labels": {"host": "web-1", "items": "key, not method", "n": 7, "none": None},
        "list": [{"a": 1}],
        "items": {"x": 1},
        "text": "abc",
    },
    "vars": {"a": {"b": [1, 2]}},
    "subject": "alerts.HighCPU",
}
SOURCES = [
    "{{ event.labels.host }}",
    "{{ event.labels.n }}",
    "{{ event.labels.none }}",
    "{{ event.labels }}",
    "{{ vars.a.b }}",
    "{{ event.labels.items }}",  # Jinja reads the dict's method: the fast path must too
    "{{ event.items }}",
    "{{event.text}}",
    "{{ event.text.upper }}",  # an attribute of a str, not a key
    "{{ event.list.0 }}",  # not a plain path: Jinja's item access
]
FAILING = ["{{ event.labels.missing }}", "{{ event.nope.deeper }}", "{{ nobody.x }}"]


@pytest.mark.parametrize("source", SOURCES)
def test_plain_paths_render_what_jinja_renders(source: str) -> None:
    fast = FAST.compile(source, rule="r", field="f").render(CONTEXT)
    inner = source.strip("{} ")
    slow = FAST.env.compile_expression(inner, undefined_to_none=False)(**CONTEXT)
    if callable(slow):  # a bound method: compare what it is bound to and its name
        assert callable(fast) and fast.__name__ == slow.__name__  # type: ignore[attr-defined]
        assert fast.__self__ is slow.__self__  # type: ignore[attr-defined]
    else:
        assert fast == slow and type(fast) is type(slow)


@pytest.mark.parametrize("source", FAILING)
def test_missing_names_fail_as_jinja_fails(source: str) -> None:
    with pytest.raises(TemplateError, match="undefined variable") as caught:
        FAST.compile(source, rule="r", field="f").render(CONTEXT)
    assert caught.value.rule == "r" and caught.value.field == "f"


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ({"host": "{{ event.labels.host }}", "n": 3, "tags": ["a", "{{ vars.a.b }}"]}, True),
        ("plain text", True),
        ({"host": "web-{{ event.labels.host }}"}, True),  # text and plain reads
        ({"host": "{{ event.list.0 }} web"}, False),  # a Jinja template: could be anything
        ({"hosts": "{% for h in event.list %}{{ h }}{% endfor %}"}, False),
        ("{{ event.labels.host | upper }}", False),
    ],
)
def test_only_literals_and_plain_reads_render_instantly(value: object, instant: bool) -> None:
    """Steps of these render on the event loop; the others in a thread, under a timeout."""
    assert renders_instantly(FAST.compile(value, rule="r", field="f")) is instant


TEXTS = [
    "host {{ event.labels.host }} is down",
    "{{ event.labels.host }}{{ event.labels.n }}",
    "{{event.labels.host}}: {{ event.labels.none }} / {{ vars.a.b }}",
    "{{ event.labels.items }} and {{ event.items }}",  # Jinja reads the dict's methods
    "{{ event.list.0 }} x {{ event.labels.host }}",  # not a plain read: Jinja renders all
    "{{ event.text.upper }} {{ event.labels.host }}",
    "{{ event.labels.host }}\n",  # Jinja drops the trailing newline
    "a\r\nb {{ event.labels.host }}",  # and writes CR LF as LF
    "{{- event.labels.host }} x",
    "}} {{ event.labels.host }}",
]


@pytest.mark.parametrize("source", TEXTS)
def test_text_with_plain_reads_renders_what_jinja_renders(source: str) -> None:
    fast = FAST.compile(source, rule="r", field="f").render(CONTEXT)
    assert fast == FAST.env.from_string(source).render(CONTEXT)


@pytest.mark.parametrize("source", [f"x {s} y" for s in FAILING])
def test_text_with_plain_reads_fails_as_jinja_fails(source: str) -> None:
    with pytest.raises(TemplateError) as fast:
        FAST.compile(source, rule="r", field="f").render(CONTEXT)
    with pytest.raises(jinja2.UndefinedError) as jinja:
        FAST.env.from_string(source).render(CONTEXT)
    assert fast.value.message == f"undefined variable: {jinja.value.message}"


def test_plain_reads_compile_nothing_until_jinja_is_needed() -> None:
    """Start-up (issue 25 d): plain reads and text with plain reads are valid Jinja by their
    shape, so loading compiles none of them; the first fallback to Jinja compiles it."""
    templates = Templates(Secrets({}))
    read = templates.compile("{{ event.labels.missing }}", rule="r", field="f")
    text = templates.compile("host {{ event.nope.x }} down", rule="r", field="g")
    assert len(templates._expressions) == 0 and len(templates._templates) == 0
    for compiled in (read, text):
        with pytest.raises(TemplateError):
            compiled.render(CONTEXT)
    assert len(templates._expressions) == 1 and len(templates._templates) == 1
