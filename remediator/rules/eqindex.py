"""The equality index: candidate rules filed by the values their `eq` conditions name.

The subject index (`matching.RuleIndex`) hands over fixed lists of candidates: an
exact subject's rules, a trie node's. Each list is made a `Segment` once, at load:
its rules grouped by the paths their indexable `eq` conditions name
(`conditions.split`), each group a dict from those values to the rules that name
them, and every rule an `Entry` whose checks are only what the dict did not decide.
A `Plan` joins the segments one subject reaches (memoized by the index): per event
it reads each path once and looks each group up, so the rules evaluated are those
whose indexed equalities hold, plus those with none, in priority order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from remediator.model import Renderable, Rule
from remediator.rules.conditions import accessor, split

Getter = Callable[[object], object]
Path = tuple[str, ...]

Check = Callable[[object], bool]  # one `match` entry as a call on the whole payload
# One candidate as the `match` loop runs it: (rank, rule, priority, stop, checks, when). A
# tuple, read by position (cheaper than attributes) and sorted by rank (ranks are unique).
Entry = tuple[int, Rule, int, bool, tuple[Check, ...], Renderable | None]
Key = object  # what a rule's indexable `eq`s name: a str for one path, a tuple for several
Pick = Callable[[dict[int, object]], Key]  # an itemgetter of slots


@dataclass(frozen=True, slots=True)
class Segment:
    """An exact subject's rules, or a trie node's, grouped by the paths of their indexable
    `eq`s. A group picks its key from the event's values at those paths. The first group's
    entries include `rest` (the rules without an indexable `eq`), which are also the answer
    when that group's key misses."""

    ranks: tuple[int, ...]
    slots: tuple[int, ...]  # the paths this segment reads
    groups: tuple[tuple[Pick, dict[Key, tuple[Entry, ...]]], ...]
    rest: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one subject reaches: its candidates and the segments they come in."""

    rules: tuple[Rule, ...]  # every candidate, in priority order
    reads: tuple[tuple[int, Getter], ...]  # (slot, path read) for every path a segment keys on
    segments: tuple[Segment, ...]

    def select(self, payload: object) -> Sequence[Entry]:
        """The candidates worth evaluating for `payload`, in priority order."""
        values: dict[int, object] = {}
        for slot, read in self.reads:
            value = read(payload)
            values[slot] = value if type(value) is str else None  # None is no key
        found: Sequence[Entry] = ()
        for segment in self.segments:
            hits: Sequence[Entry] = segment.rest
            first = True
            for pick, table in segment.groups:
                hit = table.get(pick(values))
                if hit is not None:
                    hits = hit if first or not hits else sorted([*hits, *hit])
                first = False
            if hits:
                found = hits if not found else sorted([*found, *hits])
        return found


class Compiler:
    """Rules made into entries and segments, with one slot number per path keyed on."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = rules
        self.slots: dict[Path, int] = {}
        self.reads: list[Getter] = []
        self.checks: dict[object, Check] = {}  # shared by equal entries (`conditions.split`)
        self.lists: dict[tuple[Check, ...], tuple[Check, ...]] = {}  # and equal lists of them
        self.compiled = [self._compile(rank, rule) for rank, rule in enumerate(rules)]

    def _compile(self, rank: int, rule: Rule) -> tuple[Entry, tuple[int, ...], Key]:
        keys, checks = split(rule.conditions, self.checks)
        for path in keys:
            if path not in self.slots:
                self.slots[path] = len(self.reads)
                self.reads.append(accessor(path))
        slots = tuple(sorted(self.slots[path] for path in keys))
        by_slot = {self.slots[path]: value for path, value in keys.items()}
        key = by_slot[slots[0]] if len(slots) == 1 else tuple(by_slot[n] for n in slots)
        checks = self.lists.setdefault(checks, checks)
        return (rank, rule, rule.priority, rule.stop, checks, rule.when), slots, key

    def segment(self, ranks: Sequence[int]) -> Segment:
        """The rules at `ranks` as a segment: grouped by key paths, largest group first."""
        grouped: dict[tuple[int, ...], dict[Key, list[Entry]]] = {}
        rest: list[Entry] = []
        for rank in sorted(ranks):
            entry, slots, key = self.compiled[rank]
            if slots:
                grouped.setdefault(slots, {}).setdefault(key, []).append(entry)
            else:
                rest.append(entry)
        by_size = sorted(grouped.items(), key=lambda item: -sum(map(len, item[1].values())))
        groups = tuple(
            (
                itemgetter(*slots),
                {k: tuple(sorted([*e, *rest]) if i == 0 else e) for k, e in t.items()},
            )
            for i, (slots, t) in enumerate(by_size)
        )
        used = tuple(sorted({n for slots in grouped for n in slots}))
        return Segment(ranks=tuple(sorted(ranks)), slots=used, groups=groups, rest=tuple(rest))

    def plan(self, segments: Sequence[Segment]) -> Plan:
        """The segments one subject reaches, joined; each rule must come in one only."""
        ranks = sorted({rank for segment in segments for rank in segment.ranks})
        if sum(len(segment.ranks) for segment in segments) != len(ranks):
            segments = [self.segment(ranks)]  # a rule reached twice: one segment, each once
        slots = sorted({n for segment in segments for n in segment.slots})
        return Plan(
            rules=tuple(self.rules[rank] for rank in ranks),
            reads=tuple((n, self.reads[n]) for n in slots),
            segments=tuple(segments),
        )
