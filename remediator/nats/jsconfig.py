"""What remediator creates in JetStream: the one place stream and bucket configs are built.

Every stream and key-value bucket the daemon creates (the alerts stream,
`REMEDIATOR_RESULTS`, the state buckets, and any added later) gets its
configuration here, so `--replicas` reaches all of them. Existing ones are
never resized behind the operator's back: a replica count other than the
one asked for is reported as a warning naming both.
"""

from __future__ import annotations

import logging
import re

from nats.js.api import KeyValueConfig, StorageType, StreamConfig

log = logging.getLogger(__name__)

MANAGED = "managed by remediator"
DUPLICATE_WINDOW = 120.0

RESULTS_STREAM = "REMEDIATOR_RESULTS"
# Named subjects, not `remediator.>`: `remediator.audit.>` belongs to REMEDIATOR_AUDIT
# (JetStream refuses two streams sharing a subject; see `audit.narrow_results`).
RESULTS_SUBJECTS = [
    "remediator.*",  # deadletter, escalations, and a step's own `remediator.<name>`
    "remediator.results.>",
    "remediator.escalations.>",
    "remediator.approvals.>",
    "remediator.verified.>",
    "remediator.notifications.>",
    "remediator.manual.>",  # the event of each manual run, kept like an alert (`--from`)
]


# Every subject remediator's own streams store (results and dead letters, the audit
# trail): a rule cannot take its events from them in JetStream mode.
OWN_SUBJECTS = [*RESULTS_SUBJECTS, "remediator.audit.>"]


def _pattern_regex(pattern: str) -> str:
    tokens = (
        r"[^.]+" if t == "*" else r"[^.]+(?:\.[^.]+)*" if t == ">" else re.escape(t)
        for t in pattern.split(".")
    )
    return r"\.".join(tokens)


# One match per publish (a step's subject, each rule's result subject): a cache of
# answers thrashed once a fleet's rules had more subjects than it held.
_IN_RESULTS = re.compile("|".join(f"(?:{_pattern_regex(p)})" for p in RESULTS_SUBJECTS))


def in_results(subject: str) -> bool:
    """Whether the results stream (once ensured) captures `subject`: no server look-up."""
    return _IN_RESULTS.fullmatch(subject) is not None


def stream_config(
    name: str, subjects: list[str], replicas: int, max_age: float | None = None
) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        description=MANAGED,
        max_age=max_age,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=replicas,
        storage=StorageType.FILE,
    )


def bucket_config(
    bucket: str, ttl: float | None, description: str, replicas: int
) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=bucket,
        history=1,
        ttl=ttl,
        description=description,
        replicas=replicas,
        storage=StorageType.FILE,
    )


def bucket_stream(bucket: str) -> str:
    """The stream behind a key-value bucket."""
    return f"KV_{bucket}"


def check_replicas(stream: str, actual: int | None, wanted: int) -> bool:
    """Warn when an existing stream (or bucket's stream) has another replica count;
    never change it: resizing is the operator's call."""
    actual = actual or 1
    if actual == wanted:
        return True
    log.warning(
        "stream %s has %d replica(s), --replicas asks for %d; left as it is "
        "(change it with `nats stream edit %s --replicas %d`)",
        stream,
        actual,
        wanted,
        stream,
        wanted,
    )
    return False
