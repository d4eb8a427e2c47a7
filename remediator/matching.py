"""Matching: which rules an event fires, decided purely from its subject and payload.

This module owns subject patterns (NATS semantics: `*` is one token, `>` one or
more trailing tokens), payload paths, the `match` operators and the rule index.
Everything that can be prepared is prepared once: the loader builds each
`Condition` with `build_condition` (regexes compiled, numeric operands converted)
and `RuleIndex` files rules by subject (exact subjects in a dict, wildcard
patterns in a token trie) and memoizes candidates per subject. The per-event
path then does look-ups and calls compiled tests; it never raises and never
does I/O.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from remediator.model import Condition, Rule

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "regex", "exists")
MEMO_SIZE = 10_000  # subjects remembered by RuleIndex.candidates before it starts over


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing.MISSING  # what `resolve` returns for a path that is not in the payload


# --- subjects ---------------------------------------------------------------------------


def subject_problem(pattern: str, *, wildcards: bool = True) -> str | None:
    """Why `pattern` is not a usable subject (pattern), or None when it is."""
    if not pattern or any(c.isspace() for c in pattern):
        return f"subject {pattern!r} must be non-empty and contain no whitespace"
    tokens = pattern.split(".")
    if "" in tokens:
        return f"subject {pattern!r} has an empty token (check the dots)"
    for index, token in enumerate(tokens):
        if token in ("*", ">") and not wildcards:
            return f"subject {pattern!r} must be a literal subject, without wildcards"
        if token == ">" and index != len(tokens) - 1:
            return f"subject {pattern!r}: '>' may only be the last token"
        if token not in ("*", ">") and ("*" in token or ">" in token):
            return f"subject {pattern!r}: wildcards must be whole tokens"
    return None


def subject_matches(pattern: str, subject: str) -> bool:
    """True when `subject` is matched by `pattern` (`*` one token, `>` one or more)."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


# --- payload paths ----------------------------------------------------------------------


def resolve(payload: object, path: str | Sequence[str]) -> object:
    """The value at a dotted `path` (integers index lists), or MISSING."""
    tokens = path.split(".") if isinstance(path, str) else path
    value = payload
    for token in tokens:
        if type(value) is dict or isinstance(value, Mapping):  # the exact check is the fast path
            value = value.get(token, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list) and _is_index(token):
            index = int(token)
            if not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def _is_index(token: str) -> bool:
    return token.isdigit() or (token[:1] == "-" and token[1:].isdigit())


# --- operators --------------------------------------------------------------------------
#
# Equality (eq, ne, in, not_in): numbers compare by value (5 equals 5.0), and a numeric
# string equals the number it spells, because Alertmanager labels are always strings while
# YAML reads `code: 500` as a number; an operator writing `500` means the number either
# way. Everything else must be equal and of the same JSON type: true is not 1, "yes" is
# not true, "5.0" is not "5". Ordering operators (gt gte lt lte) take numbers and numeric
# strings; any other value simply does not match. A missing path fails every operator
# except `exists: false`.

Test = Callable[[object], bool]


def build_condition(path: str, op: str, operand: object) -> Condition:
    """One compiled `match` entry; ValueError names what is wrong with the operand."""
    builder = _BUILDERS.get(op)
    if builder is None:
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(OPERATORS)})")
    test = builder(operand)
    if op != "exists":
        test = _present(test)
    return Condition(path=tuple(path.split(".")), op=op, operand=operand, test=test)


def _present(test: Test) -> Test:
    return lambda value: value is not MISSING and test(value)


def number(value: object) -> int | float | None:
    """`value` as a number when it is one or a string spelling a finite one; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _equal_to(operand: object) -> Test:
    if isinstance(operand, bool) or operand is None:
        return lambda value: value is operand
    wanted = number(operand)
    if wanted is None:
        return lambda value: type(value) is type(operand) and value == operand
    if isinstance(operand, str):
        return lambda value: (
            value == operand or (not isinstance(value, str) and number(value) == wanted)
        )
    return lambda value: not isinstance(value, bool) and number(value) == wanted


def _not_equal_to(operand: object) -> Test:
    equal = _equal_to(operand)
    return lambda value: not equal(value)


def _member_of(operand: object) -> Test:
    if not isinstance(operand, list):
        raise ValueError(f"expected a list, got {operand!r}")
    strings = frozenset(item for item in operand if isinstance(item, str))
    numbers = frozenset(n for item in operand if (n := number(item)) is not None)
    singles = tuple(item for item in operand if isinstance(item, bool) or item is None)

    def test(value: object) -> bool:
        if isinstance(value, bool) or value is None:
            return any(value is item for item in singles)
        if isinstance(value, str) and value in strings:
            return True
        if isinstance(value, list | dict):
            return False
        return bool(numbers) and number(value) in numbers

    return test


def _not_member_of(operand: object) -> Test:
    member = _member_of(operand)
    return lambda value: not member(value)


def _ordered(compare: Callable[[float, float], bool]) -> Callable[[object], Test]:
    def build(operand: object) -> Test:
        bound = number(operand)
        if bound is None:
            raise ValueError(f"expected a number, got {operand!r}")

        def test(value: object) -> bool:
            seen = number(value)
            return seen is not None and compare(seen, bound)

        return test

    return build


def _searching(operand: object) -> Test:
    if not isinstance(operand, str):
        raise ValueError(f"expected a regular expression string, got {operand!r}")
    try:
        pattern = re.compile(operand)
    except re.error as exc:
        raise ValueError(f"bad regular expression {operand!r}: {exc}") from None
    return lambda value: isinstance(value, str) and pattern.search(value) is not None


def _existing(operand: object) -> Test:
    if not isinstance(operand, bool):
        raise ValueError(f"expected true or false, got {operand!r}")
    return lambda value: (value is not MISSING) is operand


_BUILDERS: Mapping[str, Callable[[object], Test]] = {
    "eq": _equal_to,
    "ne": _not_equal_to,
    "gt": _ordered(lambda seen, bound: seen > bound),
    "gte": _ordered(lambda seen, bound: seen >= bound),
    "lt": _ordered(lambda seen, bound: seen < bound),
    "lte": _ordered(lambda seen, bound: seen <= bound),
    "in": _member_of,
    "not_in": _not_member_of,
    "regex": _searching,
    "exists": _existing,
}


# --- verdicts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether one rule matched one event and, if not, what decided it.

    `failed` is built only when read, so evaluating a non-matching rule allocates
    no text on the hot path.
    """

    matched: bool
    seen: object = None
    error: str | None = None
    condition: Condition | None = None  # the first `match` entry that failed
    when: str | None = None  # the `when` source, when `when` decided

    @property
    def failed(self) -> str | None:
        if self.matched:
            return None
        if self.condition is not None:
            return f"match {self.condition.text}: saw {_show(self.seen)}"
        if self.error is not None:
            return f"when: {self.when} raised: {self.error}"
        return f"when: {self.when} was false"


_MATCHED = Verdict(matched=True)


def _show(value: object) -> str:
    if value is MISSING:
        return "nothing (the path is missing)"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def evaluate(rule: Rule, payload: object, context: Mapping[str, object]) -> Verdict:
    """Check `rule`'s `match` entries against `payload`, then its `when` against `context`.

    Never raises: a `when` that fails to render is a non-match with `error` set.
    """
    for condition in rule.conditions:
        value = resolve(payload, condition.path)
        if not condition.test(value):
            return Verdict(matched=False, seen=value, condition=condition)
    if rule.when is None:
        return _MATCHED
    try:
        result = rule.when.render(context)
        truthy = bool(result)
    except Exception as exc:  # any failure of user code in `when` is this rule's non-match
        return Verdict(matched=False, error=str(exc), when=rule.when.source)
    return _MATCHED if truthy else Verdict(matched=False, seen=result, when=rule.when.source)


# --- the index --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Matches:
    """The rules one event fired, in priority order, and every verdict reached on the way."""

    fired: tuple[Rule, ...] = ()
    evaluations: tuple[tuple[Rule, Verdict], ...] = ()
    stopped_by: Rule | None = None  # the `stop: true` rule that cut off lower priorities


_NO_MATCHES = Matches()


@dataclass(slots=True)
class _Node:
    """One token position in the wildcard trie; rules are kept as ranks (priority order)."""

    children: dict[str, _Node] = field(default_factory=dict)
    star: _Node | None = None
    here: list[int] = field(default_factory=list)  # patterns that end at this token
    rest: list[int] = field(default_factory=list)  # patterns that end with `>` after it


class RuleIndex:
    """Rules filed by subject pattern; `candidates` costs what the matching rules cost."""

    def __init__(self, rules: Iterable[Rule], *, memo_size: int = MEMO_SIZE) -> None:
        loaded = list(rules)
        order = sorted(range(len(loaded)), key=lambda i: (-loaded[i].priority, i))
        self._rules = tuple(loaded[i] for i in order)
        self._exact: dict[str, list[int]] = {}
        self._root = _Node()
        self._wild = False
        for rank, rule in enumerate(self._rules):
            for pattern in dict.fromkeys(rule.subjects):
                self._file(pattern, rank)
        self._memo: dict[str, tuple[Rule, ...]] = {}
        self._memo_size = memo_size

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, highest priority first, then in load order."""
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def _file(self, pattern: str, rank: int) -> None:
        tokens = pattern.split(".")
        if "*" not in tokens and ">" not in tokens:
            self._exact.setdefault(pattern, []).append(rank)
            return
        self._wild = True
        node = self._root
        for token in tokens[:-1]:
            node = _child(node, token)
        if tokens[-1] == ">":
            node.rest.append(rank)
        else:
            _child(node, tokens[-1]).here.append(rank)

    def candidates(self, subject: str) -> tuple[Rule, ...]:
        """The rules whose `on` can match `subject`, each once, in priority order."""
        found = self._memo.get(subject)
        if found is not None:
            return found
        ranks = set(self._exact.get(subject, ()))
        if self._wild:
            _walk(self._root, subject.split("."), 0, ranks)
        found = tuple(self._rules[rank] for rank in sorted(ranks))
        if len(self._memo) >= self._memo_size:
            self._memo.clear()
        self._memo[subject] = found
        return found

    def match(self, subject: str, payload: object, context: Mapping[str, object]) -> Matches:
        """The rules this event fires; a matched `stop: true` rule ends lower priorities."""
        return self._run(subject, payload, context, everything=False)

    def explain(self, subject: str, payload: object, context: Mapping[str, object]) -> Matches:
        """Like `match`, but evaluates every candidate, even those a `stop` rule cut off."""
        return self._run(subject, payload, context, everything=True)

    def _run(
        self, subject: str, payload: object, context: Mapping[str, object], *, everything: bool
    ) -> Matches:
        candidates = self.candidates(subject)
        if not candidates:
            return _NO_MATCHES
        fired: list[Rule] = []
        evaluations: list[tuple[Rule, Verdict]] = []
        stopper: Rule | None = None
        for rule in candidates:
            if stopper is not None and rule.priority < stopper.priority and not everything:
                break
            verdict = evaluate(rule, payload, context)
            evaluations.append((rule, verdict))
            if not verdict.matched or (stopper is not None and rule.priority < stopper.priority):
                continue
            fired.append(rule)
            if rule.stop and stopper is None:
                stopper = rule
        return Matches(fired=tuple(fired), evaluations=tuple(evaluations), stopped_by=stopper)


def _child(node: _Node, token: str) -> _Node:
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    return node.children.setdefault(token, _Node())


def _walk(node: _Node, tokens: list[str], depth: int, out: set[int]) -> None:
    if node.rest and depth < len(tokens):
        out.update(node.rest)
    if depth == len(tokens):
        out.update(node.here)
        return
    child = node.children.get(tokens[depth])
    if child is not None:
        _walk(child, tokens, depth + 1, out)
    if node.star is not None:
        _walk(node.star, tokens, depth + 1, out)
