"""The daemon config's `ssh:` section: where trust and keys come from, how connections live.

Checked once at start-up, so a typo in the config file is a ConfigError naming
the key before any alert arrives, not a failed step at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remediator.durations import parse_duration
from remediator.errors import ConfigError

_CONFIG_KEYS = (
    "known_hosts",
    "client_keys",
    "user",
    "connect_timeout",
    "max_sessions_per_host",
    "idle_timeout",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHSettings:
    """The daemon's SSH settings: where trust and keys come from, and how connections live."""

    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    client_keys: tuple[Path, ...] = ()  # empty: ~/.ssh/id_* as OpenSSH would; the agent always
    user: str | None = None
    connect_timeout: float = 10.0
    max_sessions_per_host: int = 4
    idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise ConfigError(f"ssh.connect_timeout: must be positive, got {self.connect_timeout}")
        if self.max_sessions_per_host < 1:
            raise ConfigError(
                f"ssh.max_sessions_per_host: must be at least 1, got {self.max_sessions_per_host}"
            )
        if self.idle_timeout < 0:
            raise ConfigError(f"ssh.idle_timeout: must not be negative, got {self.idle_timeout}")

    @classmethod
    def from_config(cls, section: Mapping[str, object]) -> SSHSettings:
        """Settings from the config file's `ssh:` section; ConfigError names the bad key."""
        unknown = sorted(set(section) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"ssh: unknown key(s) {', '.join(unknown)}; expected {', '.join(_CONFIG_KEYS)}"
            )
        default = cls()
        return cls(
            known_hosts=_config_path(section, "known_hosts", default.known_hosts),
            client_keys=_config_paths(section, "client_keys"),
            user=_config_user(section),
            connect_timeout=_config_duration(section, "connect_timeout", default.connect_timeout),
            max_sessions_per_host=_config_count(
                section, "max_sessions_per_host", default.max_sessions_per_host
            ),
            idle_timeout=_config_duration(section, "idle_timeout", default.idle_timeout),
        )


def _config_path(section: Mapping[str, object], key: str, default: Path) -> Path:
    value = section.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise ConfigError(f"ssh.{key}: expected a file path, got {value!r}")
    return Path(value).expanduser()


def _config_paths(section: Mapping[str, object], key: str) -> tuple[Path, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"ssh.{key}: expected a list of file paths, got {value!r}")
    return tuple(Path(v).expanduser() for v in value)


def _config_user(section: Mapping[str, object]) -> str | None:
    value = section.get("user")
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"ssh.user: expected a user name, got {value!r}")
    return value


def _config_duration(section: Mapping[str, object], key: str, default: float) -> float:
    value = section.get(key)
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"ssh.{key}: {exc}") from None


def _config_count(section: Mapping[str, object], key: str, default: int) -> int:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"ssh.{key}: expected a whole number, got {value!r}")
    return value
