"""Rule files as parsed and schema-checked before, keyed by their content.

Start-up with 10,000 rules spends about half its time reading YAML and checking
its structure, the same work for the same bytes at every start. A file that
parsed cleanly and passed the structural check is kept here as its data and
line marks (`marshal`: plain values only, nothing is executed when read back),
under the SHA-256 of its text and of the code that reads it, so an edited file
or a new version of remediator misses and is read afresh. Rules are still
compiled from the data on every start: templates, regexes and conditions are
checked as always. Anything wrong with the cache (unreadable, half written,
another version's) is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import marshal
import os
from pathlib import Path
from typing import Any

from remediator.rules import schemacheck, yamlsource
from remediator.rules.yamlsource import Document

log = logging.getLogger(__name__)

_FORMAT = b"remediator parse cache 1\n"


def _code_hash() -> bytes:
    """The readers' own source: a change to how files are read or checked misses."""
    digest = hashlib.sha256(_FORMAT)
    for module in (yamlsource, schemacheck):
        if module.__file__ is not None:
            with contextlib.suppress(OSError):
                digest.update(Path(module.__file__).read_bytes())
    return digest.digest()


class ParseCache:
    """One file per rule file's content under `directory`, created on first write."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._salt = _code_hash()

    def _path(self, text: str) -> Path:
        key = hashlib.sha256(self._salt + text.encode("utf-8", "surrogatepass")).hexdigest()
        return self.directory / f"{key}.marshal"

    def get(self, text: str, file: str) -> Document | None:
        try:
            data, lines, blocks = marshal.loads(self._path(text).read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if not isinstance(lines, dict) or not isinstance(blocks, dict):
            return None
        return Document(file=file, data=data, lines=lines, blocks=blocks)

    def put(self, text: str, document: Document) -> None:
        path = self._path(text)
        try:
            record: Any = (document.data, document.lines, document.blocks)  # plain values
            body = marshal.dumps(record)
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(body)
            partial.replace(path)  # whole or absent: a reader never sees half a file
        except (OSError, ValueError) as exc:
            log.debug("rule file cache not written: %s", exc)
