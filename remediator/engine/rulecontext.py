"""What a rule's templates compute from an event's context: its vars, throttle bucket
and verification key; and whether an event is a resolving one.

Shared by the engine, the approval path and the offline tools, so that each
asks the same question the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from remediator.model import Event, Rule


def render_vars(rule: Rule, context: Mapping[str, object]) -> dict[str, object]:
    """Render `vars` in order; each sees the ones before it as `vars.x`."""
    values: dict[str, object] = {}
    scope = dict(context)
    scope["vars"] = values
    for name, template in rule.vars:
        values[name] = template.render(scope)
    return values


def throttle_bucket(rule: Rule, context: Mapping[str, object]) -> str:
    """The throttle key for this event; one bucket per rule when the rule gives none."""
    if rule.throttle is None or rule.throttle.key is None:
        return ""
    return str(rule.throttle.key.render(context))


def verify_key(rule: Rule, context: Mapping[str, object]) -> str:
    """The rendered `verify.key`; by default the payload's `fingerprint`, else the event id."""
    if rule.verify is None or rule.verify.key is None:
        payload = context["event"]
        fingerprint = payload.get("fingerprint") if isinstance(payload, Mapping) else None
        return str(context["event_id"] if fingerprint is None else fingerprint)
    return str(rule.verify.key.render(context))


def resolving(event: Event) -> bool:
    return event.payload.get("status") == "resolved"
