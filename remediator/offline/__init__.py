"""The engine with no outside world: `remediator test`, `explain` and `replay`."""
