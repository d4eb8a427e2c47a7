"""Matching: which rules an event fires, decided purely from its subject and payload.

This module owns subject patterns (NATS semantics: `*` is one token, `>` one or
more trailing tokens), the verdict on one rule and the rule index. `RuleIndex`
files rules by subject once (exact subjects in a dict, wildcard patterns in a
token trie), and each such list again by the values its rules' `eq` conditions
name (`Segment`), so that an event evaluates only the candidates whose indexed
equalities hold. Their remaining conditions (see `conditions`) and `when` then run
in priority order, honouring `stop`. The per-event path does look-ups and calls
compiled tests; it never raises, never does I/O, and builds no verdict for a rule
that does not fire (`explain` builds them all).
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from remediator.model import Condition, Renderable, Rule
from remediator.rules.conditions import MISSING, resolve
from remediator.rules.eqindex import Compiler, Plan, Segment
from remediator.rules.subjects import MAX_SUBJECT_BYTES

MEMO_SIZE = 10_000  # subjects remembered by RuleIndex.candidates before it starts over


# --- subjects ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # rules repeat their subjects; checked once each
def subject_problem(pattern: str, *, wildcards: bool = True) -> str | None:
    """Why `pattern` is not a usable subject (pattern), or None when it is."""
    if len(pattern.encode(errors="replace")) > MAX_SUBJECT_BYTES:  # the server closes for it
        return f"subject {pattern[:40]!r}... is over {MAX_SUBJECT_BYTES} bytes"
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
_QUIET = Verdict(matched=False)  # `match` does not say why a rule stayed quiet; `explain` does


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


def _judge(when: Renderable, context: Mapping[str, object]) -> Verdict:
    """A `when` on the `match` path: matched, the shared quiet verdict, or the error."""
    try:
        return _MATCHED if when.render(context) else _QUIET
    except Exception as exc:  # any failure of user code in `when` is this rule's non-match
        return Verdict(matched=False, error=str(exc), when=when.source)


# --- the index --------------------------------------------------------------------------


class Matches(NamedTuple):
    """The rules one event fired, in priority order, and what decided the others.

    `in_play`: the candidates a `stop` rule did not cut off. `explain` keeps every verdict;
    `match` only the `when`s that raised, and `evaluations` works the rest out when read.
    (A named tuple, as immutable as a frozen dataclass and a third of the cost to build.)
    """

    fired: tuple[Rule, ...] = ()
    stopped_by: Rule | None = None  # the `stop: true` rule that cut off lower priorities
    in_play: tuple[Rule, ...] = ()
    errors: tuple[tuple[Rule, Verdict], ...] = ()
    verdicts: tuple[tuple[Rule, Verdict], ...] | None = None
    payload: object = None
    context: Mapping[str, object] | None = None

    @property
    def evaluations(self) -> tuple[tuple[Rule, Verdict], ...]:
        """Every rule in play with its verdict, in priority order."""
        if self.verdicts is not None:
            return self.verdicts
        known = {id(rule): _MATCHED for rule in self.fired}
        known.update((id(rule), verdict) for rule, verdict in self.errors)
        context = self.context if self.context is not None else {}
        return tuple(
            (rule, known[id(rule)] if id(rule) in known else evaluate(rule, self.payload, context))
            for rule in self.in_play
        )


_NO_MATCHES = Matches(verdicts=())


@dataclass(slots=True)
class _Node:
    """One token position in the wildcard trie; rules are kept as ranks (priority order)."""

    children: dict[str, _Node] = field(default_factory=dict)
    star: _Node | None = None
    here: list[int] = field(default_factory=list)  # patterns that end at this token
    rest: list[int] = field(default_factory=list)  # patterns that end with `>` after it
    segments: tuple[Segment | None, Segment | None] = (None, None)  # of `here`, of `rest`


class RuleIndex:
    """Rules filed by subject pattern, then by equality: `match` costs what the rules whose
    subject and indexed equalities hold cost."""

    def __init__(self, rules: Iterable[Rule], *, memo_size: int = MEMO_SIZE) -> None:
        loaded = list(rules)
        order = sorted(range(len(loaded)), key=lambda i: (-loaded[i].priority, i))
        self._rules = tuple(loaded[i] for i in order)
        exact: dict[str, list[int]] = {}
        self._root = _Node()
        self._wild = False
        for rank, rule in enumerate(self._rules):
            for pattern in dict.fromkeys(rule.subjects):
                self._file(pattern, rank, exact)
        self._compiler = Compiler(self._rules)
        self._exact = {subject: self._compiler.segment(r) for subject, r in exact.items()}
        _seal(self._root, self._compiler)
        self._memo: dict[str, Plan] = {}
        self._plans: dict[tuple[int, ...], Plan] = {}  # by the ids of the segments
        self._memo_size = memo_size

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, highest priority first, then in load order."""
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def _file(self, pattern: str, rank: int, exact: dict[str, list[int]]) -> None:
        tokens = pattern.split(".")
        if "*" not in tokens and ">" not in tokens:
            exact.setdefault(pattern, []).append(rank)
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
        return self._plan(subject).rules

    def _plan(self, subject: str) -> Plan:
        found = self._memo.get(subject)
        if found is not None:
            return found
        segments: list[Segment] = []
        if (segment := self._exact.get(subject)) is not None:
            segments.append(segment)
        if self._wild:
            _walk(self._root, subject.split("."), 0, segments)
        key = tuple(map(id, segments))
        if len(self._memo) >= self._memo_size:
            self._memo.clear()
            self._plans.clear()
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._compiler.plan(segments)
        self._memo[subject] = found
        return found

    def match(self, subject: str, payload: object, context: Mapping[str, object]) -> Matches:
        """The rules this event fires; a matched `stop: true` rule ends lower priorities."""
        plan = self._memo.get(subject) or self._plan(subject)
        if not plan.rules:
            return _NO_MATCHES
        fired: list[Rule] = []
        errors: tuple[tuple[Rule, Verdict], ...] = ()
        stopper: Rule | None = None
        for entry in plan.select(payload):  # (rank, rule, priority, stop, checks, when)
            if stopper is not None and entry[2] < stopper.priority:
                break
            for check in entry[4]:
                if not check(payload):
                    break
            else:
                if (when := entry[5]) is not None:
                    verdict = _judge(when, context)
                    if verdict is not _MATCHED:
                        if verdict.error is not None:
                            errors += ((entry[1], verdict),)
                        continue
                fired.append(entry[1])
                if entry[3] and stopper is None:
                    stopper = entry[1]
        in_play = plan.rules if stopper is None else _above(plan.rules, stopper.priority)
        return Matches(tuple(fired), stopper, in_play, errors, None, payload, context)

    def explain(self, subject: str, payload: object, context: Mapping[str, object]) -> Matches:
        """Like `match`, but evaluates every candidate, even those a `stop` rule cut off, and
        keeps every verdict."""
        candidates = self.candidates(subject)
        fired: list[Rule] = []
        verdicts: list[tuple[Rule, Verdict]] = []
        stopper: Rule | None = None
        for rule in candidates:
            verdict = evaluate(rule, payload, context)
            verdicts.append((rule, verdict))
            if not verdict.matched or (stopper is not None and rule.priority < stopper.priority):
                continue
            fired.append(rule)
            if rule.stop and stopper is None:
                stopper = rule
        errors = tuple((r, v) for r, v in verdicts if v.error is not None)
        return Matches(tuple(fired), stopper, candidates, errors, tuple(verdicts), payload, context)


def _above(rules: tuple[Rule, ...], priority: int) -> tuple[Rule, ...]:
    """The leading `rules` (priority order) of at least `priority`: what a `stop` leaves."""
    return rules[: bisect_right(rules, -priority, key=lambda rule: -rule.priority)]


def _child(node: _Node, token: str) -> _Node:
    if token == "*":
        if node.star is None:
            node.star = _Node()
        return node.star
    return node.children.setdefault(token, _Node())


def _seal(node: _Node, compiler: Compiler) -> None:
    """Build the segments of every trie node, once, at load."""
    here = compiler.segment(node.here) if node.here else None
    node.segments = (here, compiler.segment(node.rest) if node.rest else None)
    for child in node.children.values():
        _seal(child, compiler)
    if node.star is not None:
        _seal(node.star, compiler)


def _walk(node: _Node, tokens: list[str], depth: int, out: list[Segment]) -> None:
    here, rest = node.segments
    if rest is not None and depth < len(tokens):
        out.append(rest)
    if depth == len(tokens):
        if here is not None:
            out.append(here)
        return
    child = node.children.get(tokens[depth])
    if child is not None:
        _walk(child, tokens, depth + 1, out)
    if node.star is not None:
        _walk(node.star, tokens, depth + 1, out)
