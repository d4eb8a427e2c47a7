"""What a dry run does not know: earlier steps' outputs, which no step produced.

In a dry run no step runs, so `results.scale.to` has no value. It renders as the
placeholder `<results.scale.to>` (a `Pending`), so a dry run still shows every
later request. But a dry run must not *guess* with it either: comparing it, testing
its truth or turning it into a number raises `Unknown`, and the runner reports the
step as undecided ("unknown") instead of picking a branch. A step whose answer was
given (a rule test's `answers:` for a query) is known: `DryResults` hands out its
real output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn


class Unknown(Exception):
    """A dry run needed a value no step has produced (`path`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"depends on {path}, which a dry run does not know")


class Pending:
    """Stands in for an output no step produced; renders as `<results.step.field>`."""

    __hash__ = object.__hash__

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Pending:
        return Pending(f"{self._path}.{name}")

    def __getitem__(self, name: object) -> Pending:
        return Pending(f"{self._path}.{name}")

    def __str__(self) -> str:
        return f"<{self._path}>"

    def _unknown(self, *_: object) -> NoReturn:
        raise Unknown(self._path)

    # Deciding anything with it would be a guess.
    __bool__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _unknown
    __float__ = __int__ = __add__ = __sub__ = __mul__ = __truediv__ = _unknown
    __radd__ = __rsub__ = __rmul__ = __rtruediv__ = _unknown


class DryResults:
    """`results` in a dry run: the outputs that are known, a `Pending` for the rest."""

    def __init__(self, known: Mapping[str, object]) -> None:
        self._known = known

    def __getattr__(self, name: str) -> object:
        return self[name]

    def __getitem__(self, name: object) -> object:
        if isinstance(name, str) and name in self._known:
            return self._known[name]
        return Pending(f"results.{name}")

    def __str__(self) -> str:
        return "<results>"
