"""The `regex` operator's engine: RE2 where it can, Python's `re` only where provably safe.

Python's `re` backtracks: `error.*timeout` is quadratic on a large field (a 750 KB
log line froze a daemon for minutes) and `(a+)+b` is exponential. RE2 (google-re2)
runs in time linear in the text and needs no time budget, so every pattern it can
compile is searched with it, in the event loop. Measured on this code base: a
750 KB value against `error.*timeout` takes ~15 ms with RE2, ~0.3 s per 200 KB
(quadratic) with `re`; matching in a worker process with a deadline cost ~190 µs
per search against ~1 µs in process, and turns a slow match into a lost event.

RE2 cannot compile lookarounds, backreferences, `\\Z`, `(?x)`, atomic groups and
possessive repeats, or repeats over 1000. Such a pattern is searched with `re`
only when it has none of the shapes that make backtracking blow up: a repeat
inside a repeat, a repeat inside a lookaround, or two adjacent repeats that can
match the same character (`a*a*`); otherwise it is refused at load, so
`validate` names its file and line. The syntax accepted is Python's (checked by
`re` first); RE2 differs in that `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only and
`$` (without `(?m)`) matches only at the very end of the text.
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

# Neither module has type stubs: the regex parse tree (to find the dangerous shapes)
# and google-re2.
_parser: Any = importlib.import_module("re._parser")
_re2: Any = importlib.import_module("re2")

Search = Callable[[str], bool]
_WIDE = 16  # a bounded repeat above this many rounds counts as a repeat for the checks
_SAMPLE = [*range(0x300), 0x3000, 0xA0, 0x2028, 0x660, 0xFF10]  # characters tried for overlap


def compile_search(source: str) -> Search:
    """`source` compiled into a test `value -> found anywhere`; ValueError naming why not."""
    try:
        backtracking = re.compile(source)
    except re.error as exc:
        raise ValueError(f"bad regular expression {source!r}: {exc}") from None
    options = _re2.Options()
    options.log_errors = False  # RE2 would write every refusal to stderr
    try:
        linear = _re2.compile(source, options=options)
    except _re2.error as exc:
        refused = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
    else:
        return lambda value: linear.search(value) is not None
    if why := dangerous(source):
        raise ValueError(
            f"regular expression {source!r} {why}: it needs Python's backtracking engine "
            f"(RE2 refuses it: {refused}), where that shape can take exponential or "
            "polynomial time on a crafted value; rewrite it without that shape"
        )
    return lambda value: backtracking.search(value) is not None


def dangerous(source: str) -> str | None:
    """What makes `source` slow under backtracking (a sentence), or None."""
    tree = _parser.parse(source)
    if found := _scan(tree, inside=False):
        return found
    for sequence in _sequences(tree):
        for op, arg in sequence:
            if op in (_parser.ASSERT, _parser.ASSERT_NOT) and _has_repeat(arg[1]):
                return "repeats inside a lookaround"
        for first, second in itertools.pairwise(sequence):
            if _repeats(first) and _repeats(second) and _overlap(first[1][2], second[1][2]):
                return "has adjacent repeats that can match the same text (like `a*a*`)"
    return None


_REPEATS = {_parser.MAX_REPEAT, _parser.MIN_REPEAT, getattr(_parser, "POSSESSIVE_REPEAT", None)}


def _repeats(item: tuple[Any, Any]) -> bool:
    op, arg = item
    return op in _REPEATS and (arg[1] is _parser.MAXREPEAT or arg[1] > _WIDE)


def _children(op: Any, arg: Any) -> Iterator[Any]:
    """The sub-sequences of one parse item (groups, branches, repeats, lookarounds)."""
    if op in _REPEATS:
        yield arg[2]
    elif op is _parser.SUBPATTERN:
        yield arg[-1]
    elif op is _parser.BRANCH:
        yield from arg[1]
    elif op in (_parser.ASSERT, _parser.ASSERT_NOT):
        yield arg[1]
    elif op is getattr(_parser, "ATOMIC_GROUP", None):
        yield arg
    elif op is _parser.GROUPREF_EXISTS:
        yield from (branch for branch in arg[1:] if branch is not None)


def _sequences(items: Any) -> Iterator[list[tuple[Any, Any]]]:
    sequence = list(items)
    yield sequence
    for op, arg in sequence:
        for child in _children(op, arg):
            yield from _sequences(child)


def _has_repeat(items: Any) -> bool:
    return any(_repeats(item) for sequence in _sequences(items) for item in sequence)


def _overlap(left: Any, right: Any) -> bool:
    """Whether two repeated bodies may start with one same character; True when unsure."""
    a, b = list(left), list(right)
    if not a or not b:
        return True
    return any(_could_match(a[0], code) and _could_match(b[0], code) for code in _SAMPLE)


def _scan(items: Iterable[tuple[Any, Any]], inside: bool) -> str | None:
    for op, arg in items:
        if op in _REPEATS:
            _low, high, sub = arg
            repeats = high is _parser.MAXREPEAT or high > 1
            if repeats and inside:
                return "nests a repeat inside a repeat"
            # `(/[a-z]+)+`: each round starts with a character no inner repeat matches, so
            # the rounds cannot be split two ways: linear, allowed.
            if found := _scan(sub, inside or (repeats and not _delimited(sub))):
                return found
            continue
        for child in _children(op, arg):
            if found := _scan(child, inside):
                return found
    return None


def _delimited(body: Any) -> bool:
    """Whether a repeated `body` starts with a literal character no repeat inside matches."""
    items = list(body)
    while items and items[0][0] is _parser.SUBPATTERN:
        items = list(items[0][1][-1]) + items[1:]
    if not items or items[0][0] is not _parser.LITERAL:
        return False
    first = items[0][1]
    return not any(_could_match(item, first) for item in _repeated_items(body))


def _repeated_items(items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[Any, Any]]:
    for op, arg in items:
        if op in _REPEATS:
            yield from arg[2]
        elif op is _parser.SUBPATTERN:
            yield from _repeated_items(arg[-1])
        elif op is _parser.BRANCH:
            for branch in arg[1]:
                yield from _repeated_items(branch)


def _could_match(item: tuple[Any, Any], code: int) -> bool:
    """Whether one regex item may match the character `code`; True when unsure."""
    op, arg = item
    if op is _parser.LITERAL:
        return bool(arg == code)
    if op is _parser.NOT_LITERAL:
        return bool(arg != code)
    if op is not _parser.IN:
        return True  # groups, categories, `.`: assume it may
    negate = any(o is _parser.NEGATE for o, _ in arg)
    hit = False
    for o, a in arg:
        if o is _parser.LITERAL:
            hit = hit or a == code
        elif o is _parser.RANGE:
            hit = hit or a[0] <= code <= a[1]
        elif o is _parser.CATEGORY and a in _CATEGORIES:
            hit = hit or _CATEGORIES[a](chr(code))
        elif o is not _parser.NEGATE:
            return True  # anything else: assume it may
    return hit != negate


_CATEGORIES: Mapping[Any, Callable[[str], bool]] = {
    _parser.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    _parser.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    _parser.CATEGORY_DIGIT: str.isdigit,
    _parser.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    _parser.CATEGORY_SPACE: str.isspace,
    _parser.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
}
