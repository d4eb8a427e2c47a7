"""A template or expression compiled on first use, then kept.

For sources whose shape alone makes them valid Jinja (plain dotted reads, text
with plain reads): loading them has nothing to check, and their fast paths
rarely need the compiled form, so start-up does not compile them (with 10,000
rules that was 20,000 compilations and most of the templates' memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


class Later:
    """Stands in for a compiled expression (called) or template (`generate`)."""

    __slots__ = ("_compile", "_compiled", "_source")

    def __init__(self, compile_: Callable[[str], Any], source: str) -> None:
        self._compile: Callable[[str], Any] | None = compile_
        self._source = source
        self._compiled: Any = None

    def _get(self) -> Any:
        if self._compile is not None:
            self._compiled, self._compile = self._compile(self._source), None
        return self._compiled

    def __call__(self, **context: object) -> object:
        return self._get()(**context)

    def generate(self, context: Mapping[str, object]) -> Iterator[str]:
        generated: Iterator[str] = self._get().generate(context)
        return generated
