"""Plain dotted reads (`{{ event.labels.host }}`) take a fast path that must give exactly
what Jinja gives: the same values, and the same errors where Jinja raises."""

from __future__ import annotations

import pytest

from remediator.errors import TemplateError
from remediator.rules.templating import Secrets, Templates, renders_instantly

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
        ({"host": "web-{{ event.labels.host }}"}, False),  # a Jinja template: may loop
        ({"hosts": "{% for h in event.list %}{{ h }}{% endfor %}"}, False),
        ("{{ event.labels.host | upper }}", False),
    ],
)
def test_only_literals_and_plain_reads_render_instantly(value: object, instant: bool) -> None:
    """Steps of these render on the event loop; the others in a thread, under a timeout."""
    assert renders_instantly(FAST.compile(value, rule="r", field="f")) is instant
