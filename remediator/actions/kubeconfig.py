"""Where the Kubernetes API server is and how to authenticate to it: `KubeSettings`.

This module owns resolving an `Endpoint` (server URL, TLS context, credentials).
`KubeSettings` holds the daemon config's `kubernetes:` section as written. Nothing is read
from disk until `resolve()` runs at the first request, so a daemon without `scale` rules
never needs Kubernetes. Resolution order, the one client-go's tools use: an explicit `api`
(with `token`, `ca`); a kubeconfig named by `kubernetes.kubeconfig`/`context` or
`$KUBECONFIG`; the in-cluster service account; `~/.kube/config`. Kubeconfig files are
merged as kubectl merges them; `-data` client certificates pass through a private
temporary directory because `ssl` reads chains only from files.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from remediator.errors import ConfigError, StepError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_SECTION_KEYS = frozenset({"kubeconfig", "context", "api", "token", "ca"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A bearer token, given, or read from its file at each request (mounted tokens rotate)."""

    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None

    def authorization(self) -> str | None:
        token = self.token
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise StepError(
                    f"cannot read Kubernetes token file {self.token_file}: {exc.strerror}"
                ) from exc
        return f"Bearer {token}" if token else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A resolved API server: URL, TLS context (None for plain http) and credentials."""

    server: str
    ssl_context: ssl.SSLContext | None
    credentials: Credentials
    tls_server_name: str | None = None
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeSettings:
    """The `kubernetes:` section plus the environment it was read with; resolved lazily."""

    api: str | None = None
    token: str | None = field(default=None, repr=False)
    ca: str | None = None
    kubeconfig: tuple[Path, ...] = ()  # configured or $KUBECONFIG: tried before in-cluster
    default_kubeconfig: Path | None = None  # ~/.kube/config: tried after in-cluster
    context: str | None = None
    service_host: str | None = None
    service_port: str | None = None
    service_account_dir: Path = SERVICE_ACCOUNT_DIR

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, object],
        environ: Mapping[str, str],
        *,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> KubeSettings:
        """Check the section's shape now; what it points at is read by `resolve()`."""
        unknown = sorted(set(section) - _SECTION_KEYS)
        if unknown:
            raise ConfigError(f"kubernetes: unknown key(s): {', '.join(unknown)}")
        api, token, ca = (_setting(section, key) for key in ("api", "token", "ca"))
        if api is not None:
            _check_url(api)
        elif token is not None or ca is not None:
            raise ConfigError("kubernetes: token and ca are used only with kubernetes.api")
        configured = _setting(section, "kubeconfig") or environ.get("KUBECONFIG", "")
        return cls(
            api=api.rstrip("/") if api else None,
            token=token,
            ca=ca,
            kubeconfig=tuple(_expand(p, environ) for p in configured.split(os.pathsep) if p),
            default_kubeconfig=_expand("~/.kube/config", environ),
            context=_setting(section, "context"),
            service_host=environ.get("KUBERNETES_SERVICE_HOST"),
            service_port=environ.get("KUBERNETES_SERVICE_PORT"),
            service_account_dir=service_account_dir,
        )

    def resolve(self) -> Endpoint:
        """The endpoint to use; ConfigError when none is configured or a file is malformed."""
        if self.api is not None:
            return self._explicit(self.api)
        if self.kubeconfig or self.context:
            return from_kubeconfig(self.kubeconfig or _paths(self.default_kubeconfig), self.context)
        if self.service_host and self.service_port:
            return self._in_cluster(self.service_host, self.service_port)
        if self.default_kubeconfig is not None and self.default_kubeconfig.is_file():
            return from_kubeconfig((self.default_kubeconfig,), None)
        raise ConfigError(
            "kubernetes: no API server configured: set kubernetes.api and token, run in a pod "
            f"with a service account, or provide a kubeconfig ({self.default_kubeconfig} "
            "does not exist)"
        )

    def _explicit(self, api: str) -> Endpoint:
        ca_file, ca_data = (None, self.ca) if _is_pem(self.ca) else (self.ca, None)
        context = _tls(ca_file=ca_file, ca_data=ca_data) if api.startswith("https:") else None
        return Endpoint(
            server=api,
            ssl_context=context,
            credentials=Credentials(token=self.token),
            source="kubernetes.api",
        )

    def _in_cluster(self, host: str, port: str) -> Endpoint:
        token_file = self.service_account_dir / "token"
        if not token_file.is_file():
            raise ConfigError(
                f"kubernetes: in a pod (KUBERNETES_SERVICE_HOST is set) but there "
                f"is no service account token at {token_file}; is "
                "automountServiceAccountToken false?"
            )
        host = f"[{host}]" if ":" in host else host
        return Endpoint(
            server=f"https://{host}:{port}",
            ssl_context=_tls(ca_file=str(self.service_account_dir / "ca.crt")),
            credentials=Credentials(token_file=token_file),
            source="in-cluster service account",
        )


def from_kubeconfig(paths: Sequence[Path], context: str | None) -> Endpoint:
    """The endpoint of `context` (default: current-context) in the merged kubeconfig files."""
    config = _Kubeconfig.load(paths)
    name = context or config.current_context
    where = f"kubeconfig {os.pathsep.join(str(p) for p in config.files)}"
    if not name:
        raise ConfigError(f"{where}: no current-context; set kubernetes.context")
    ctx = config.entry("contexts", name, where)
    cluster = config.entry("clusters", _text(ctx.entry, "cluster", where), where)
    user_name = _optional_text(ctx.entry, "user", where)
    user = config.entry("users", user_name, where) if user_name else _Entry({}, cluster.base)
    server = _text(cluster.entry, "server", f"{where}: cluster")
    _check_url(server)
    for unsupported in ("exec", "auth-provider", "username", "proxy-url"):
        if unsupported in user.entry or unsupported in cluster.entry:
            raise ConfigError(
                f"{where}: context {name}: '{unsupported}' is not supported; use "
                "a token, tokenFile or client certificate"
            )
    return Endpoint(
        server=server.rstrip("/"),
        ssl_context=_kubeconfig_tls(cluster, user, where) if server.startswith("https:") else None,
        credentials=Credentials(
            token=_optional_text(user.entry, "token", where),
            token_file=user.path("tokenFile", where),
        ),
        tls_server_name=_optional_text(cluster.entry, "tls-server-name", where),
        source=f"{where}, context {name}",
    )


def _kubeconfig_tls(cluster: _Entry, user: _Entry, where: str) -> ssl.SSLContext:
    return _tls(
        ca_file=cluster.path("certificate-authority", where),
        ca_data=cluster.data("certificate-authority-data", where),
        insecure=cluster.entry.get("insecure-skip-tls-verify") is True,
        cert=_Pem(
            user.path("client-certificate", where), user.data("client-certificate-data", where)
        ),
        key=_Pem(user.path("client-key", where), user.data("client-key-data", where)),
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    """One named cluster, user or context; relative paths are relative to its file."""

    entry: Mapping[str, object]
    base: Path

    def path(self, key: str, where: str) -> Path | None:
        value = _optional_text(self.entry, key, where)
        return self.base / Path(value).expanduser() if value else None

    def data(self, key: str, where: str) -> str | None:
        value = _optional_text(self.entry, key, where)
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: {key}: not base64-encoded PEM") from exc


@dataclass(slots=True)
class _Kubeconfig:
    """Several kubeconfig files merged as kubectl does: the first file to name a thing wins."""

    files: tuple[Path, ...]
    named: dict[str, dict[str, _Entry]] = field(default_factory=dict)
    current_context: str | None = None

    @classmethod
    def load(cls, paths: Sequence[Path]) -> _Kubeconfig:
        found = tuple(p for p in paths if p.is_file())
        if not found:
            raise ConfigError(f"kubeconfig not found: {', '.join(str(p) for p in paths)}")
        config = cls(found)
        for path in found:
            try:
                document = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"kubeconfig {path}: cannot read: {exc}") from exc
            if document is not None:
                config._merge(document, path)
        return config

    def entry(self, section: str, name: str, where: str) -> _Entry:
        found = self.named.get(section, {}).get(name)
        if found is None:
            known = ", ".join(sorted(self.named.get(section, {}))) or "none"
            raise ConfigError(f"{where}: {section[:-1]} {name!r} not found (known: {known})")
        return found

    def _merge(self, document: object, path: Path) -> None:
        where = f"kubeconfig {path}"
        if not isinstance(document, Mapping):
            raise ConfigError(f"{where}: not a YAML mapping")
        self.current_context = self.current_context or _optional_text(
            document, "current-context", where
        )
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            items = document.get(section) or []
            if not isinstance(items, list):
                raise ConfigError(f"{where}: {section}: expected a list")
            for item in items:
                if not isinstance(item, Mapping) or not isinstance(item.get(inner), Mapping):
                    raise ConfigError(f"{where}: {section}: each entry needs name and {inner}")
                name = _text(item, "name", f"{where}: {section}")
                self.named.setdefault(section, {}).setdefault(
                    name, _Entry(item[inner], path.parent)
                )


@dataclass(frozen=True, slots=True)
class _Pem:
    """A PEM certificate or key, as a file or as decoded `-data`."""

    file: Path | None
    data: str | None

    def __bool__(self) -> bool:
        return self.file is not None or self.data is not None


_NO_PEM = _Pem(None, None)


def _tls(
    *,
    ca_file: str | Path | None = None,
    ca_data: str | None = None,
    insecure: bool = False,
    cert: _Pem = _NO_PEM,
    key: _Pem = _NO_PEM,
) -> ssl.SSLContext:
    """A client TLS context: the given CA (else the system's), verified unless `insecure`."""
    try:
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file else None, cadata=ca_data or None
        )
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert or key:
            _load_client_certificate(context, cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kubernetes: TLS material: {exc}") from exc
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: _Pem, key: _Pem) -> None:
    """ssl reads chains only from files: `-data` forms go to a private directory, then away."""
    if not (cert and key):
        raise ConfigError("kubernetes: a client certificate needs both certificate and key")
    with tempfile.TemporaryDirectory(prefix="remediator-kube-") as private:  # mode 0700
        files = [
            pem.file or _private_file(Path(private) / name, pem.data or "")
            for name, pem in (("cert.pem", cert), ("key.pem", key))
        ]
        context.load_cert_chain(files[0], files[1])


def _private_file(path: Path, text: str) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return path


def _setting(section: Mapping[str, object], key: str) -> str | None:
    return _optional_text(section, key, "kubernetes")


def _optional_text(mapping: Mapping[str, object], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: {key}: expected a string, got {type(value).__name__}")
    return value or None


def _text(mapping: Mapping[str, object], key: str, where: str) -> str:
    value = _optional_text(mapping, key, where)
    if value is None:
        raise ConfigError(f"{where}: {key}: required")
    return value


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"kubernetes: API server {url!r}: expected https://host[:port]")


def _expand(path: str, environ: Mapping[str, str]) -> Path:
    if path == "~" or path.startswith("~/"):
        home = environ.get("HOME")
        return Path(home, path[2:]) if home else Path(path).expanduser()
    return Path(path)


def _paths(path: Path | None) -> tuple[Path, ...]:
    return (path,) if path is not None else ()


def _is_pem(value: str | None) -> bool:
    return value is not None and value.lstrip().startswith("-----BEGIN")
