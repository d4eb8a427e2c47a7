"""Secrets: `secret(NAME)` for templates, and masking every value handed out.

A secret is looked up in the environment, then in the secrets directory;
every value handed out is remembered, and `mask` hides it wherever it shows
up in a log line or a result, raw or in the encodings it may be sent in
(percent-encoded, `+` for spaces, base64).
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remediator.errors import TemplateError

MASK = "***"


@dataclass(slots=True)
class Secrets:
    """`secret(name)`: environment variable NAME first, then the file NAME in `directory`.

    Every value handed out is remembered so `mask` can hide it wherever it shows up.
    """

    environ: Mapping[str, str]
    directory: Path | None = None
    known: set[str] = field(default_factory=set)
    _forms: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> str:
        value = self.environ.get(name)
        if value is None and self.directory is not None and _safe_name(name):
            path = self.directory / name
            if path.is_file():
                value = path.read_text().rstrip("\n")
        if value is None:
            raise TemplateError(f"secret {name!r} is not set (environment or secrets directory)")
        if value:
            self.known.add(value)
        return value

    def mask(self, value: object) -> object:
        """`value` with every known secret replaced by `***`, at any depth."""
        if not self.known:
            return value
        if isinstance(value, str):
            for form in self._all_forms():
                if form in value:
                    value = value.replace(form, MASK)
            return value
        if isinstance(value, Mapping):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        return value

    def _all_forms(self) -> tuple[str, ...]:
        """Every secret as it may be sent: raw, percent-encoded (path and query styles,
        `+` for spaces) and base64; longest first, so a form is masked before its parts."""
        if len(self._forms) != len(self.known) + 1:  # `known` only grows: recompute then
            # A snapshot: steps render (and call `get`) in worker threads.
            forms = {secret: encoded_forms(secret) for secret in tuple(self.known)}
            everything = sorted({f for fs in forms.values() for f in fs}, key=len, reverse=True)
            self._forms = {**forms, "": tuple(everything)}
        return self._forms[""]


_CONFIG_SECRET = re.compile(r"^\s*secret\(\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*\)\s*$")


def config_secret(value: str, secrets: Secrets, *, literal_is_secret: bool = True) -> str:
    """A config file value: `secret(NAME)` is read like any secret (TemplateError when it
    is unset) and masked from then on; a literal is taken as it is, and masked too when
    it is a credential (`literal_is_secret`)."""
    found = _CONFIG_SECRET.match(value)
    if found is not None:
        return secrets.get(found.group(1))
    if value and literal_is_secret:
        secrets.known.add(value)
    return value


def encoded_forms(secret: str) -> tuple[str, ...]:
    data = secret.encode(errors="surrogatepass")
    forms = {secret}
    for safe in ("", "/", _QUERY_SAFE):
        forms.add(urllib.parse.quote(secret, safe=safe))
        forms.add(urllib.parse.quote_plus(secret, safe=safe))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(data).decode()
        forms.update({text, text.rstrip("=")})
    return tuple(f for f in forms if f)


_QUERY_SAFE = "/?:@!$'()*,;~"  # what URL libraries (yarl, requests) leave unescaped in a query


def _safe_name(name: str) -> bool:
    return bool(name) and os.sep not in name and name not in (".", "..")
