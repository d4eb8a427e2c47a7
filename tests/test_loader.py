"""The loader: good files become the expected model; every problem names file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remediator.errors import RuleError, RuleErrors
from remediator.model import Rule, Step
from remediator.rules.loader import load_rules
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "rules_broken"
OK = DATA / "rules_ok"


@pytest.fixture
def templates() -> Templates:
    return Templates(Secrets({}))


def problems(paths: list[Path], templates: Templates) -> tuple[RuleError, ...]:
    with pytest.raises(RuleErrors) as caught:
        load_rules(paths, templates)
    return caught.value.errors


def only_problem(path: Path, templates: Templates) -> RuleError:
    (error,) = problems([path], templates)
    return error


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_text(tmp_path: Path, text: str, templates: Templates) -> tuple[Rule, ...]:
    return load_rules([write(tmp_path, text)], templates)


def problem_in(tmp_path: Path, text: str, templates: Templates) -> RuleError:
    return only_problem(write(tmp_path, text), templates)


# --- one broken file per problem ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "rule", "field", "message"),
    [
        ("yaml_syntax.yaml", 5, "", "", "YAML syntax error: "),
        ("unknown_key.yaml", 4, "unknown-key", "priorty", "unknown key 'priorty'"),
        ("wrong_type.yaml", 4, "wrong-type", "priority", "expected integer, got string"),
        (
            "unknown_kind.yaml",
            6,
            "unknown-kind",
            "actions[1].shell",
            "unknown action kind 'shell' "
            "(known: http, kubernetes, prometheus, publish, scale, ssh)",
        ),
        (
            "jinja_syntax.yaml",
            9,
            "jinja-syntax",
            "actions[0].http.json.text",
            "template syntax error: unexpected '}'",
        ),
        ("bad_regex.yaml", 6, "bad-regex", "match.labels.instance.regex", "bad regular expr"),
        ("bad_duration.yaml", 5, "bad-duration", "throttle.cooldown", "not a duration"),
    ],
)
def test_each_broken_file_names_its_place(
    templates: Templates, name: str, line: int, rule: str, field: str, message: str
) -> None:
    error = only_problem(BROKEN / name, templates)
    assert (error.file, error.line, error.rule, error.field) == (
        str(BROKEN / name),
        line,
        rule,
        field,
    )
    assert message in error.message
    assert str(error).startswith(f"{BROKEN / name}:{line}: ")


def test_duplicate_rule_name_across_files_names_both_places(templates: Templates) -> None:
    error = only_problem(BROKEN / "duplicate", templates)
    first = BROKEN / "duplicate" / "a.yaml"
    assert (error.file, error.line, error.rule, error.field) == (
        str(BROKEN / "duplicate" / "b.yaml"),
        8,
        "restart-agent",
        "name",
    )
    assert error.message == f"duplicate rule name 'restart-agent' (first defined at {first}:2)"


def test_every_problem_in_every_file_is_reported(templates: Templates) -> None:
    found = problems([BROKEN], templates)
    files = {Path(error.file).name for error in found}
    assert len(found) == 8
    assert files == {path.name for path in BROKEN.rglob("*.yaml")} - {"a.yaml"}


def test_problems_in_one_file_are_all_reported_in_line_order(
    tmp_path: Path, templates: Templates
) -> None:
    path = write(
        tmp_path,
        """\
        rules:
          - name: many
            on: alerts..cpu
            match: {value: {gt: lots}}
            when: "event.value >"
            actions:
              - http: {url: "https://x/{{ a }"}
                timeout: soon
              - scale: {deployment: web}
              - kubernetes:
                  cordon: {node: a}
                  uncordon: {node: a}
        """,
    )
    found = problems([path], templates)
    assert [(e.line, e.field) for e in found] == [
        (3, "on"),
        (4, "match.value.gt"),
        (5, "when"),
        (7, "actions[0].http.url"),
        (8, "actions[0].timeout"),
        (9, "actions[1].scale"),
        (10, "actions[2].kubernetes"),
    ]
    assert "needs step or replicas" in found[-2].message
    assert "use only one of cordon, uncordon" in found[-1].message


# --- YAML details -------------------------------------------------------------------------


def test_yaml_1_2_booleans_keep_on_and_norway(tmp_path: Path, templates: Templates) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
        rules:
          - name: norway
            on: alerts.geo
            match: {country: NO, enabled: true}
            actions: [{publish: {subject: ops.notify}}]
        """,
        templates,
    )
    assert [(c.path, c.operand) for c in rule.conditions] == [
        (("country",), "NO"),
        (("enabled",), True),
    ]


def test_dates_stay_strings(tmp_path: Path, templates: Templates) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
        rules:
          - {name: dated, on: a.b, match: {day: 2024-01-31}, actions: [{publish: {subject: x}}]}
        """,
        templates,
    )
    assert rule.conditions[0].operand == "2024-01-31"


def test_duplicate_keys_are_errors(tmp_path: Path, templates: Templates) -> None:
    error = problem_in(
        tmp_path,
        """\
        rules:
          - name: twice
            on: a.b
            on: c.d
            actions: [{publish: {subject: x}}]
        """,
        templates,
    )
    assert (error.line, error.rule, error.field) == (4, "twice", "on")
    assert error.message == "duplicate key 'on' (first at line 3)"


def test_merge_keys_and_aliases(tmp_path: Path, templates: Templates) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
        x-notify: &notify {publish: {subject: ops.notify}, timeout: 5s}
        rules:
          - name: merged
            on: a.b
            actions:
              - <<: *notify
                name: first
                timeout: 7s
              - *notify
        """,
        templates,
    )
    assert [(s.name, s.kind, s.timeout) for s in rule.steps] == [
        ("first", "publish", 7),
        ("publish-1", "publish", 5),
    ]


def test_a_rule_may_extend_another(tmp_path: Path, templates: Templates) -> None:
    one, two = load_text(
        tmp_path,
        """\
        rules:
          - &base
            name: one
            on: a.b
            actions: [{publish: {subject: x}, timeout: 5s}]
          - <<: *base
            name: two
            priority: 3
        """,
        templates,
    )
    assert (one.name, one.priority, two.name, two.priority) == ("one", 0, "two", 3)
    assert two.subjects == ("a.b",) and two.source.line == 6


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 0, "empty file"),
        ("- name: x\n", 1, "expected a mapping with `rules:`"),
        ("rules: [\n", 1, "YAML syntax error"),
        ("a: &x [*x]\n", 1, "an alias refers to itself"),
        ("rules: []\n---\nrules: []\n", 2, "YAML syntax error"),
    ],
)
def test_file_level_problems(
    tmp_path: Path, templates: Templates, text: str, line: int, message: str
) -> None:
    error = problem_in(tmp_path, text, templates)
    assert error.line == line
    assert error.message.startswith(message)


def test_missing_path(tmp_path: Path, templates: Templates) -> None:
    error = only_problem(tmp_path / "nope.yaml", templates)
    assert (error.file, error.message) == (str(tmp_path / "nope.yaml"), "no such file or directory")


def test_block_scalar_template_error_points_at_its_line(
    tmp_path: Path, templates: Templates
) -> None:
    error = problem_in(
        tmp_path,
        """\
        rules:
          - name: script
            on: a.b
            actions:
              - ssh:
                  host: web-1
                  script: |
                    echo one
                    echo {{ event.x | }}
        """,
        templates,
    )
    assert (error.line, error.field) == (9, "actions[0].ssh.script")


# --- compile-time checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        ("on: 'a.>.b'", "on", "'>' may only be the last token"),
        ("on: [a.b, 'a b']", "on[1]", "no whitespace"),
        ("on: 'a.b*'", "on", "wildcards must be whole tokens"),
        ("throttle: {max_runs: 3}", "throttle.max_runs", "max_runs needs window"),
        ("throttle: {escalate: x}", "throttle", "needs cooldown or max_runs"),
        ("throttle: {cooldown: 1m, escalate: 'ops.*'}", "throttle.escalate", "literal subject"),
        ("verify: {key: x}", "verify", "needs resolved_within or query"),
        ("verify: {resolved_within: 0}", "verify.resolved_within", "must be longer than 0"),
        ("match: {value: {gt: high}}", "match.value.gt", "expected a number"),
        ("match: {value: {about: 3}}", "match.value.about", "unknown key 'about'"),
        ("vars: {my-var: 1}", "vars.my-var", "variable names are identifiers"),
        ("vars: {x: '{{ a ) }}'}", "vars.x", "template syntax error"),
        ("when: 'event.x >'", "when", "template syntax error"),
        ("name2: x", "name2", "unknown key 'name2'"),
    ],
)
def test_rule_field_problems(
    tmp_path: Path, templates: Templates, snippet: str, field: str, message: str
) -> None:
    text = "rules:\n  - name: r\n    actions: [{publish: {subject: x}}]\n"
    if not snippet.startswith("on:"):
        text += "    on: a.b\n"
    error = problem_in(tmp_path, text + f"    {snippet}\n", templates)
    assert (error.rule, error.field) == ("r", field)
    assert message in error.message
    assert error.line == (4 if snippet.startswith("on:") else 5)


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ("{shell: {command: ls}}", "actions[0].shell", "unknown action kind 'shell'"),
        ("{name: x}", "actions[0]", "a step needs an action kind"),
        ("{http: {url: 'https://x'}, ssh: {host: h, command: c}}", "actions[0]", "exactly one"),
        ("{http: {url: 'https://x', method: FETCH}}", "actions[0].http.method", "unknown HTTP"),
        ("{http: {url: 'ftp://x'}}", "actions[0].http.url", "not an http:// or https:// URL"),
        ("{http: {url: 'https://x', json: {}, body: ''}}", "actions[0].http", "only one of"),
        ("{ssh: {host: h}}", "actions[0].ssh", "needs command or script"),
        ("{ssh: {host: h, command: c, port: 2.5}}", "actions[0].ssh.port", "integer or string"),
        ("{publish: {subject: 'ops.>'}}", "actions[0].publish.subject", "literal subject"),
        ("{publish: {subject: x}, timeout: 0}", "actions[0].timeout", "longer than 0"),
        ("{publish: {subject: x}, timout: 5}", "actions[0].timout", "did you mean 'timeout'"),
        (
            "{publish: {subject: x}, retry: {attempts: 0}}",
            "actions[0].retry.attempts",
            "at least 1",
        ),
        (
            "{publish: {subject: x}, retry: {backoff: 1m}}",
            "actions[0].retry.backoff",
            "longer than",
        ),
        ("{publish: {subject: x}, when: 'a b'}", "actions[0].when", "template syntax error"),
    ],
)
def test_step_problems(
    tmp_path: Path, templates: Templates, step: str, field: str, message: str
) -> None:
    error = problem_in(
        tmp_path, f"rules:\n  - name: r\n    on: a.b\n    actions: [{step}]\n", templates
    )
    assert (error.line, error.rule, error.field) == (4, "r", field)
    assert message in error.message


def test_duplicate_step_names(tmp_path: Path, templates: Templates) -> None:
    error = problem_in(
        tmp_path,
        """\
        rules:
          - name: r
            on: a.b
            actions:
              - publish: {subject: x}
              - name: publish-0
                publish: {subject: y}
        """,
        templates,
    )
    assert (error.line, error.field) == (6, "actions[1].name")
    assert error.message == "duplicate step name 'publish-0' (first at line 5)"


def test_rule_without_a_name_is_named_by_position(tmp_path: Path, templates: Templates) -> None:
    error = problem_in(
        tmp_path, "rules:\n  - on: a.b\n    actions: [{publish: {subject: x}}]\n", templates
    )
    assert (error.line, error.rule, error.field) == (2, "", "rules[0]")
    assert error.message == "missing required key 'name'"


# --- good files -----------------------------------------------------------------------------


def test_directory_is_read_recursively_in_a_stable_order(templates: Templates) -> None:
    rules = load_rules([OK], templates)
    assert [rule.name for rule in rules] == ["catch-all", "disk-full", "scale-out-web"]
    assert rules[0].source.file == str(OK / "nested" / "deeper" / "catch-all.yaml")


def test_a_path_given_twice_is_loaded_once(templates: Templates) -> None:
    rules = load_rules([OK, OK / "scale-out-web.yaml"], templates)
    assert len(rules) == 3


def test_spec_example_loads_into_the_model(templates: Templates) -> None:
    (rule,) = load_rules([OK / "scale-out-web.yaml"], templates)
    assert rule.name == "scale-out-web"
    assert rule.description == "add replicas when web CPU stays high"
    assert rule.subjects == ("high.cpu.alert", "alerts.HighCPU")
    assert [(c.text, c.test({})) for c in rule.conditions] == [
        ("labels.severity eq 'critical'", False),
        ("labels.env in ['prod', 'staging']", False),
        ("value gte 90", False),
        ("value lt 101", False),
    ]
    assert rule.conditions[2].test("97.5")
    assert rule.when is not None and rule.when.source == "event.labels.service.startswith('web')"
    assert (rule.priority, rule.stop, rule.dry_run) == (10, False, False)
    assert rule.source.line == 3
    assert rule.throttle is not None
    assert (rule.throttle.cooldown, rule.throttle.max_runs, rule.throttle.window) == (300, 3, 3600)
    assert rule.throttle.escalate == "remediator.escalations"
    assert rule.throttle.key is not None
    assert rule.throttle.key.render({"event": {"labels": {"service": "web"}}}) == "web"
    assert [name for name, _ in rule.vars] == ["deployment"]
    assert rule.verify is not None and rule.verify.resolved_within == 600


def test_steps_get_their_fields_and_defaults(templates: Templates) -> None:
    (rule,) = load_rules([OK / "scale-out-web.yaml"], templates)
    scale, ssh, _ = rule.steps
    assert [s.name for s in rule.steps] == ["scale", "restart-agent", "notify"]
    assert [s.kind for s in rule.steps] == ["scale", "ssh", "http"]
    assert (scale.timeout, scale.retry.attempts, scale.retry.backoff) == (60, 3, 2)
    assert (ssh.timeout, ssh.retry.attempts, ssh.retry.max_backoff) == (30, 1, 30)
    assert (ssh.when, ssh.continue_on_failure, ssh.source.line) == (None, False, 27)
    context = {"vars": {"deployment": "web"}, "event": {"labels": {"instance": "h1"}}}
    assert scale.request.render(context) == {
        "namespace": "prod",
        "deployment": "web",
        "step": 2,
        "max_replicas": 20,
    }
    (with_secret,) = load_rules(
        [OK / "scale-out-web.yaml"], Templates(Secrets({"CHAT_TOKEN": "t"}))
    )
    context = {"vars": {"deployment": "web"}, "results": {"scale": {"to": 4}}}
    rendered = with_secret.steps[2].request.render(context)
    assert isinstance(rendered, dict) and rendered["json"] == {"text": "scaled web to 4"}
    assert rendered["headers"] == {"Authorization": "Bearer t"}
    # plain reads and literals render on the event loop; `scaled {{ ... }}` is Jinja code
    assert [s.instant for s in rule.steps] == [True, True, False]
    (failure,) = rule.on_failure
    assert isinstance(failure, Step) and (failure.name, failure.kind) == (
        "on_failure-publish-0",
        "publish",
    )


def test_when_may_be_written_as_a_template(tmp_path: Path, templates: Templates) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
        rules:
          - name: wrapped
            on: a.b
            when: "{{ event.value > 3 }}"
            actions:
              - publish: {subject: x}
                when: "event.value > 4"
                continue_on_failure: true
        """,
        templates,
    )
    assert rule.when is not None and rule.when.render({"event": {"value": 4}}) is True
    (step,) = rule.steps
    assert step.when is not None and step.when.render({"event": {"value": 4}}) is False
    assert step.continue_on_failure


def test_single_subject_and_defaults(tmp_path: Path, templates: Templates) -> None:
    (rule,) = load_text(
        tmp_path,
        """\
        rules:
          - name: minimal
            on: alerts.cpu
            actions: [{publish: {subject: x}}]
        """,
        templates,
    )
    assert rule.subjects == ("alerts.cpu",)
    assert (rule.conditions, rule.when, rule.throttle, rule.verify, rule.vars) == (
        (),
        None,
        None,
        None,
        (),
    )
    assert (rule.priority, rule.stop, rule.dry_run, rule.description) == (0, False, False, "")
