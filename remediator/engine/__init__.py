"""The engine: an event in, results out — guards, step runner, the StateStore protocol.

Handed objects that satisfy small protocols (actions, a state store, a
publisher, a clock), so the same engine serves the daemon, `remediator test`,
`explain` and `replay`. Never imports nats, aiohttp or asyncssh.
"""
