"""Daemon settings: flags, then `REMEDIATOR_*` environment variables, then the config file.

`Settings` is frozen and built once by `Settings.load`, from plain mappings so
tests pass dicts instead of patching the environment. Every setting has one
row in `FIELDS`: its parser and its default. The file may also carry the
per-integration sections (`nats`, `ssh`, `kubernetes`, `budget`), kept as
mappings for the integration that reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from remediator.durations import parse_duration
from remediator.errors import ConfigError


def _text(value: object) -> str:
    return str(value)


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"not an integer: {value!r}") from None


def _positive(value: object) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"must be at least 1: {value!r}")
    return number


def _attempts(value: object) -> int:
    number = _int(value)
    if number < -1:
        raise ValueError(f"must be -1 (forever) or at least 0: {value!r}")
    return number


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _urls(value: object) -> str:
    """One URL, a comma-separated list, or (file) a YAML list: kept as `a,b,c`."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    urls = [str(u).strip() for u in items if str(u).strip()]
    if not urls:
        raise ValueError(f"no server URL in {value!r}")
    return ",".join(urls)


def _paths(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(p for p in str(value).split(",") if p)


def _budget(value: object) -> tuple[int, float]:
    """`N`, `N/WINDOW` (flag or variable) or `{max_runs, window}` (file); window default 5m."""
    if isinstance(value, Mapping):
        runs, window = value.get("max_runs"), value.get("window", "5m")
    else:
        runs, _, window = str(value).partition("/")
    try:
        return _positive(runs), parse_duration(window or "5m")
    except ValueError as exc:
        raise ValueError(f"expected N or N/WINDOW (e.g. 50/5m), got {value!r}: {exc}") from None


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "text")


def _one_of(*allowed: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


def _address(value: object) -> str:
    text = str(value)
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    rules: tuple[str, ...] = ("rules",)
    nats_url: str | None = None
    core: bool = False
    stream: str = "ALERTS"
    durable: str = "remediator"
    concurrency: int = 64
    order_key: str | None = None  # fingerprint, else subject; `none`: no ordering
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 256
    replicas: int = 1  # of every stream and key-value bucket remediator creates
    reconnect_attempts: int = -1
    # The client pings the server this often; two unanswered pings mark the connection
    # stale (/readyz fails, no new work is taken), a third makes it reconnect. nats-py's
    # default, 2 minutes, left a hung server unnoticed for minutes.
    ping_interval: float = 5.0
    http: str = "127.0.0.1:9464"
    dry_run: bool = False
    data_dir: str = ".remediator"
    embedded_port: int = 4222
    drain_timeout: float = 30.0
    log_format: str = "json"
    log_level: str = "INFO"
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nkey_seed: str | None = None
    secrets_dir: str | None = None
    webhook_subject: str = "alerts.{{ alert.labels.alertname }}"
    webhook_token: str | None = None
    max_actions: tuple[int, float] | None = None
    public_url: str | None = None  # base of links to the console (approval.url)
    sections: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        flags: Mapping[str, object],
        environ: Mapping[str, str],
        config_file: str | None = None,
    ) -> Settings:
        """First found wins: flags, then REMEDIATOR_* variables, then the file, then defaults."""
        path = flags.get("config") or environ.get("REMEDIATOR_CONFIG") or config_file
        document = _read_file(str(path)) if path else {}
        from_file = _flatten(document)
        values: dict[str, object] = {}
        for name, parse in FIELDS.items():
            raw = _first(flags.get(name), environ.get(env_name(name)), from_file.get(name))
            if raw is None:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                where = _where(name, flags, environ, path)
                raise ConfigError(f"setting {name} ({where}): {exc}") from exc
        sections = {k: v for k, v in document.items() if isinstance(v, Mapping)}
        return cls(**values, sections=sections)  # type: ignore[arg-type]

    def section(self, name: str) -> Mapping[str, object]:
        return self.sections.get(name, {})

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        return host.strip("[]"), int(port)


def env_name(setting: str) -> str:
    return "REMEDIATOR_" + setting.upper()


_FLAGS = {"nats_url": "--nats", "nats_user": "--user", "nats_password": "--password"}
_FLAGS["nats_token"] = "--token"


def _where(name: str, flags: Mapping[str, object], environ: Mapping[str, str], path: object) -> str:
    """Where the value that won came from: the error must point at what the user wrote
    (`--embedded-port 0` is not fixed by looking for REMEDIATOR_EMBEDDED_PORT)."""
    if flags.get(name) is not None:
        return _FLAGS.get(name, "--" + name.replace("_", "-"))
    if environ.get(env_name(name)) is not None:
        return env_name(name)
    return f"in {path}"


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _read_file(path: str) -> dict[str, object]:
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return document


def _flatten(document: Mapping[str, object]) -> dict[str, object]:
    """Map the file's layout onto setting names: `nats: {url, tls: {ca}}` -> nats_url, tls_ca."""
    flat = {k: v for k, v in document.items() if not isinstance(v, Mapping)}
    if isinstance(document.get("budget"), Mapping):
        flat["max_actions"] = document["budget"]
    nats = document.get("nats")
    if isinstance(nats, Mapping):
        for key, target in _NATS_KEYS.items():
            if key in nats:
                flat[target] = nats[key]
        tls = nats.get("tls")
        if isinstance(tls, Mapping):
            flat.update({f"tls_{k}": v for k, v in tls.items() if k in ("ca", "cert", "key")})
    return flat


_NATS_KEYS = {
    "url": "nats_url",
    "creds": "creds",
    "user": "nats_user",
    "password": "nats_password",
    "token": "nats_token",
    "nkey_seed": "nkey_seed",
}

FIELDS: dict[str, Callable[[object], object]] = {
    "rules": _paths,
    "nats_url": _urls,
    "core": _flag,
    "stream": _text,
    "durable": _text,
    "concurrency": _positive,
    "order_key": _text,
    "ack_wait": parse_duration,
    "max_deliver": _positive,
    "http": _address,
    "dry_run": _flag,
    "data_dir": _text,
    "drain_timeout": parse_duration,
    "log_format": _one_of(*LOG_FORMATS),
    "log_level": _one_of(*LOG_LEVELS),
    "creds": _text,
    "tls_ca": _text,
    "tls_cert": _text,
    "tls_key": _text,
    "nats_user": _text,
    "nats_password": _text,
    "nats_token": _text,
    "nkey_seed": _text,
    "secrets_dir": _text,
    "webhook_subject": _text,
    "max_actions": _budget,
    "max_ack_pending": _positive,
    "replicas": _positive,
    "embedded_port": _positive,
    "reconnect_attempts": _attempts,
    "ping_interval": parse_duration,
    "webhook_token": _text,
    "public_url": _text,
}
assert set(FIELDS) == {f.name for f in fields(Settings)} - {"sections"}
