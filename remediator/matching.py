"""Matching: which rules an event fires, decided purely from its subject and payload.

This module owns subject patterns (NATS semantics: `*` is one token, `>` one or
more trailing tokens), the verdict on one rule and the rule index. `RuleIndex`
files rules by subject once (exact subjects in a dict, wildcard patterns in a
token trie) and memoizes candidates per subject; `evaluate` then runs a
candidate's compiled `match` conditions (see `conditions`) and its `when`, in
priority order, honouring `stop`. The per-event path does look-ups and calls
compiled tests; it never raises and never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from remediator.conditions import MISSING, resolve
from remediator.model import Condition, Rule

MEMO_SIZE = 10_000  # subjects remembered by RuleIndex.candidates before it starts over


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
