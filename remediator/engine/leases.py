"""The throttle lease for a run that was counted earlier: an approved request's.

A rule with `approval:` spends its throttle run when it asks; the run itself
comes later, when a human says yes. Two approved requests for one throttle key
must still never run at once, nor beside an ordinary run of that key, so the
approved run takes the key's lease (`busy_until`) like any run, waiting while
another holds it, without counting a second run. Released through
`Guards.release` as usual; a holder that dies lets it run out on its own.
"""

from __future__ import annotations

import uuid

from remediator.engine.guards import Admission, Guards, _lease, _throttle_key, _Throttled
from remediator.engine.state import Conflict, write
from remediator.model import Rule


async def hold(guards: Guards, rule: Rule, bucket: str) -> Admission:
    """Take the lease of `rule`'s throttle key `bucket`, waiting while another run holds it."""
    if rule.throttle is None:
        return Admission("run")
    key, token = _throttle_key(rule, bucket), uuid.uuid4().hex
    while True:
        entry = await guards.store.get(key)
        state, now = _Throttled.decode(entry), guards.clock()
        if state.busy_until is not None and state.busy_until > now:
            await guards.sleep(guards.rng.uniform(0.05, 0.25))
            continue
        state.busy_until, state.token = now + _lease(rule), token
        try:
            await write(guards.store, key, state.encode(), entry)
        except Conflict:
            continue
        return Admission("run", key=key, token=token)
