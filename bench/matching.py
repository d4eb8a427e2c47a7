"""Matching alone: events per second through `RuleIndex.match` as rules grow.

    python bench/matching.py            # 1 / 100 / 1,000 / 10,000 rules, ~1 minute
    python bench/matching.py --quick    # 1 / 100 rules, a few seconds
    python bench/matching.py --profile /tmp/match.prof --profile-rules 1000  # + cProfile

For each rule count the generated rules (bench/common.py: `generate_rules`) are
written as YAML and loaded by the real loader, then a fixed list of generated
events is matched over and over for a minimum time:

- `index`: `RuleIndex.match(subject, payload, context)`, the call `Engine.fired`
  makes (contexts built beforehand, so this is matching alone);
- `engine.fired`: the whole of `Engine.fired` with its metrics (context built per
  event, one counter increment per evaluated rule), what the daemon pays;
- `naive` (the baseline): every rule in priority order, `subject_matches` on each
  of its patterns, then `matching.evaluate`, honouring `stop` as the index does.

Columns: `cand/ev`, the rules the subject index hands over per event (each is
evaluated); `eq-idx/ev`, how many of those pass all their `eq` conditions (what
an index on equality conditions would leave to evaluate; a lower bound);
`fired/ev`, rules fired per event; `cost x`, index time per event relative to
1 rule. Two rule mixes: `mixed` (2% of rules on wildcards, see common.py) and `exact`
(every rule on exact subjects). Before timing, the fired rules of index and
naive are compared on every event (`agree`). Targets (mixed): >= 200k events/s
at 1,000 rules and >= 150k at 10,000.
"""

from __future__ import annotations

import cProfile
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common import Report, RuleSet, generate_events, generate_rules, parser
from prometheus_client import CollectorRegistry

from remediator.engine.engine import Engine
from remediator.metrics import Metrics
from remediator.model import Event, Rule
from remediator.rules.loader import load_rules
from remediator.rules.matching import RuleIndex, evaluate, resolve, subject_matches
from remediator.rules.secrets import Secrets
from remediator.rules.templating import Templates

TARGETS = {1_000: 200_000.0, 10_000: 150_000.0}


def naive_match(
    rules: Sequence[Rule], subject: str, payload: object, context: dict[str, object]
) -> tuple[Rule, ...]:
    """The baseline: look at every rule (already in priority order)."""
    fired: list[Rule] = []
    stopper: Rule | None = None
    for rule in rules:
        if stopper is not None and rule.priority < stopper.priority:
            break
        if not any(subject_matches(pattern, subject) for pattern in rule.subjects):
            continue
        if evaluate(rule, payload, context).matched:
            fired.append(rule)
            if rule.stop and stopper is None:
                stopper = rule
    return tuple(fired)


def equality_survivors(candidates: Sequence[Rule], payload: object) -> int:
    """Candidates whose every `eq` condition holds: what a perfect index on equality
    conditions (path, value) would still have to evaluate; a lower bound for `cand/ev`."""
    return sum(
        all(c.test(resolve(payload, c.path)) for c in rule.conditions if c.op == "eq")
        for rule in candidates
    )


def rate(call: Callable[[int], object], count: int, min_time: float, max_calls: int) -> float:
    """Calls per second of `call(i)` for i cycling over range(count), for >= `min_time`."""
    done, chunk = 0, 50
    start = time.perf_counter()
    while True:
        for i in range(done, done + chunk):
            call(i % count)
        done += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or done >= max_calls:
            return done / elapsed


def load(ruleset: RuleSet, workdir: Path) -> tuple[tuple[Rule, ...], Templates, float]:
    ruleset.write(workdir)
    templates = Templates(Secrets({}))
    start = time.perf_counter()
    rules = load_rules([workdir], templates)
    return rules, templates, time.perf_counter() - start


def bench_size(
    size: int, mix: str, n_events: int, min_time: float, tmp: Path, profile: Path | None = None
) -> dict[str, float | int | str | bool]:
    ruleset = generate_rules(size, wildcard_share=0.02 if mix == "mixed" else 0.0)
    rules, templates, load_s = load(ruleset, tmp / f"{mix}-{size}")
    index = RuleIndex(rules)
    ordered = index.rules
    events = [
        Event(subject=s, headers={}, payload=p, event_id=f"e{i}", trace_id=f"t{i}")
        for i, (s, p) in enumerate(generate_events(ruleset, n_events))
    ]
    engine = Engine.build(index, {}, templates.secrets, metrics=Metrics(CollectorRegistry()))
    contexts = [engine.context(e) for e in events]

    agree = True
    candidates = survivors = fired = 0
    for event, context in zip(events, contexts, strict=True):
        by_index = index.match(event.subject, event.payload, context).fired
        agree &= by_index == naive_match(ordered, event.subject, event.payload, context)
        found = index.candidates(event.subject)
        candidates += len(found)
        survivors += equality_survivors(found, event.payload)
        fired += len(by_index)

    def by_index(i: int) -> object:
        e = events[i]
        return index.match(e.subject, e.payload, contexts[i])

    def by_engine(i: int) -> object:
        return engine.fired(events[i])

    def by_naive(i: int) -> object:
        e = events[i]
        return naive_match(ordered, e.subject, e.payload, contexts[i])

    index_rate = rate(by_index, len(events), min_time, 5_000_000)
    engine_rate = rate(by_engine, len(events), min_time, 5_000_000)
    naive_rate = rate(by_naive, len(events), min_time / 2, 5_000_000)
    if profile is not None:
        for call, out in ((by_index, profile), (by_engine, profile.with_suffix(".engine.prof"))):
            profiler = cProfile.Profile()
            profiler.runcall(rate, call, len(events), min_time, 5_000_000)
            profiler.dump_stats(out)
    return {
        "rules": size,
        "mix": mix,
        "wildcard_rules": sum(1 for r in rules if any("*" in s or ">" in s for s in r.subjects)),
        "load_s": load_s,
        "candidates_per_event": candidates / len(events),
        "eq_survivors_per_event": survivors / len(events),
        "fired_per_event": fired / len(events),
        "index_eps": index_rate,
        "index_us": 1e6 / index_rate,
        "engine_fired_eps": engine_rate,
        "naive_eps": naive_rate,
        "speedup_vs_naive": index_rate / naive_rate,
        "agree": agree,
    }


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--sizes", default="1,100,1000,10000", help="rule counts, comma-separated")
    cli.add_argument("--mixes", default="mixed,exact", help="rule mixes, comma-separated")
    cli.add_argument("--profile", type=Path, help="cProfile the index (and engine.fired) to")
    cli.add_argument("--profile-rules", type=int, default=1_000, help="at this size (mixed)")
    args = cli.parse_args()
    sizes = (1, 100) if args.quick else tuple(int(n) for n in args.sizes.split(","))
    n_events = 200 if args.quick else 5_000
    min_time = 0.05 if args.quick else 1.5
    report = Report("matching", args.quick)
    report.params = {"sizes": sizes, "mixes": args.mixes, "distinct_events": n_events}
    report.params["min_time_s"] = min_time
    rows: list[dict[str, float | int | str | bool]] = []
    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as tmp:
        for mix in args.mixes.split(","):
            for size in sizes:
                wanted = mix == "mixed" and size == args.profile_rules
                profile = args.profile if wanted else None
                rows.append(bench_size(size, mix, n_events, min_time, Path(tmp), profile))
                if not args.json:
                    print(f"  measured {mix} {size} rules", file=sys.stderr)
    report.results = {"rows": rows}
    for mix in args.mixes.split(","):
        mine = [r for r in rows if r["mix"] == mix]
        first = float(mine[0]["index_us"])
        report.table(
            f"matching, {mix} rules (events/s; cost relative to 1 rule)",
            [
                "rules",
                "wild",
                "load s",
                "cand/ev",
                "eq-idx/ev",
                "fired/ev",
                "index ev/s",
                "us/ev",
                "cost x",
                "engine.fired ev/s",
                "naive ev/s",
                "index/naive",
                "agree",
            ],
            [
                [
                    r["rules"],
                    r["wildcard_rules"],
                    r["load_s"],
                    r["candidates_per_event"],
                    r["eq_survivors_per_event"],
                    r["fired_per_event"],
                    r["index_eps"],
                    r["index_us"],
                    float(r["index_us"]) / first,
                    r["engine_fired_eps"],
                    r["naive_eps"],
                    r["speedup_vs_naive"],
                    r["agree"],
                ]
                for r in mine
            ],
        )
    for row in rows:
        bound = TARGETS.get(int(row["rules"]))
        if bound is not None and row["mix"] == "mixed":
            name = f"index events/s at {row['rules']:,} rules"
            report.target(name, float(row["index_eps"]), ">=", bound, "events/s")
    report.emit(args.json)
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
