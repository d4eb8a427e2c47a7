"""A small Kubernetes API server for tests: the scale subresource, HPAs, auth and faults.

It speaks real HTTPS on 127.0.0.1 with certificates from `KubePKI`, a CA made at fixture
time, and answers like the API server does for what the `scale` action uses: GET/PUT/PATCH
of `deployments|statefulsets/<name>/scale` with resourceVersion preconditions (409 and a
`Status` body when stale), HorizontalPodAutoscalers (list, get, merge-patch), 401 without a
valid bearer token or client certificate, and `Status` bodies for 403/404. Every request is
recorded, and faults (503s, a 403, another writer between a read and a write) are injected
by method calls, so tests need no sleeps. Whole objects (discovery, PATCH, nodes, pod
evictions), for the `kubernetes` action, are `api.objects` (tests/support/kube_objects.py).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.kube_objects import ObjectStore

SCALE = "/apis/apps/v1/namespaces/{namespace}/{plural}/{name}/scale"
HPAS = "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
HPA = HPAS + "/{name}"
WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True)
class KubePKI:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def generate(cls, directory: Path) -> KubePKI:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("remediator-test-ca", ca_key, ca_key, None, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate(
            "kube-apiserver", server_key, ca_key, ca, usage=ExtendedKeyUsageOID.SERVER_AUTH
        )
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _certificate(
            "remediator", client_key, ca_key, ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )
        pki = cls(
            *(
                directory / name
                for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
            )
        )
        for path, pem in (
            (pki.ca_cert, _cert_pem(ca)),
            (pki.server_cert, _cert_pem(server)),
            (pki.server_key, _key_pem(server_key)),
            (pki.client_cert, _cert_pem(client)),
            (pki.client_key, _key_pem(client_key)),
        ):
            path.write_bytes(pem)
        return pki

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.load_verify_locations(self.ca_cert)
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is one way to log in
        return context


@dataclass
class Workload:
    replicas: int
    resource_version: str


@dataclass
class Autoscaler:
    namespace: str
    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int
    resource_version: str

    def to_json(self) -> dict[str, object]:
        return {
            "kind": "HorizontalPodAutoscaler",
            "apiVersion": "autoscaling/v2",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": self.resource_version,
            },
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": self.target_kind,
                    "name": self.target_name,
                },
                "minReplicas": self.min_replicas,
                "maxReplicas": self.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }


@dataclass
class _Fault:
    status: int
    message: str
    times: int
    retry_after: str | None


@dataclass
class _Writer:
    """Another writer that changes a workload right after the next `times` reads of it."""

    replicas: int
    times: int


@dataclass
class FakeKubeAPI:
    """The fake API server. Use `async with FakeKubeAPI(pki) as api:`; `api.url` is its URL."""

    pki: KubePKI
    token: str = "test-token"
    requests: list[tuple[str, str]] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)  # "token" or "cert:<CN>" per request
    workloads: dict[tuple[str, str, str], Workload] = field(default_factory=dict)
    autoscalers: dict[tuple[str, str], Autoscaler] = field(default_factory=dict)
    _faults: dict[str | None, _Fault] = field(default_factory=dict)
    _writers: dict[tuple[str, str, str], _Writer] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _runner: web.AppRunner | None = None
    _port: int = 0
    objects: ObjectStore = field(init=False)  # whole objects, for the `kubernetes` action

    def __post_init__(self) -> None:
        self.objects = ObjectStore(status, self._versions)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method in WRITES]

    # -- state ---------------------------------------------------------------------------

    def add_deployment(self, name: str, replicas: int, namespace: str = "default") -> None:
        self.workloads[namespace, "deployments", name] = Workload(replicas, self._version())

    def add_statefulset(self, name: str, replicas: int, namespace: str = "default") -> None:
        self.workloads[namespace, "statefulsets", name] = Workload(replicas, self._version())

    def add_hpa(
        self,
        name: str,
        *,
        target: str,
        min_replicas: int,
        max_replicas: int,
        kind: str = "Deployment",
        namespace: str = "default",
    ) -> None:
        self.autoscalers[namespace, name] = Autoscaler(
            namespace, name, kind, target, min_replicas, max_replicas, self._version()
        )

    def replicas(self, name: str, plural: str = "deployments", namespace: str = "default") -> int:
        return self.workloads[namespace, plural, name].replicas

    # -- faults --------------------------------------------------------------------------

    def fail_next(
        self,
        path: str | None,
        status: int = 503,
        *,
        times: int = 1,
        message: str = "the server is currently unable to handle the request",
        retry_after: str | None = None,
    ) -> None:
        """The next `times` requests for `path` (None: any path) answer `status`."""
        self._faults[path] = _Fault(status, message, times, retry_after)

    def forbid_next(self, path: str | None = None, message: str = "forbidden") -> None:
        self.fail_next(path, 403, message=message)

    def another_writer(
        self,
        name: str,
        replicas: int,
        *,
        times: int = 1,
        plural: str = "deployments",
        namespace: str = "default",
    ) -> None:
        """After each of the next `times` scale reads of `name`, someone sets `replicas`."""
        self._writers[namespace, plural, name] = _Writer(replicas, times)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeKubeAPI:
        app = web.Application(middlewares=[self._record, self._authenticate, self._inject])
        app.router.add_route("GET", SCALE, self._get_scale)
        app.router.add_route("PUT", SCALE, self._put_scale)
        app.router.add_route("PATCH", SCALE, self._patch_scale)
        app.router.add_get(HPAS, self._list_hpas)
        app.router.add_get(HPA, self._get_hpa)
        app.router.add_patch(HPA, self._patch_hpa)
        self.objects.add_routes(app.router)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self.pki.server_context()).start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- middleware ----------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            self.identities.append("token")
            return await handler(request)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:  # verified against the test CA during the handshake
            self.identities.append(f"cert:{_common_name(peer)}")
            return await handler(request)
        return status(401, "Unauthorized")

    @web.middleware
    async def _inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        for key in (request.path, None):
            fault = self._faults.get(key)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[key]
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return status(fault.status, fault.message, headers)
        return await handler(request)

    # -- scale subresource ---------------------------------------------------------------

    async def _get_scale(self, request: web.Request) -> web.StreamResponse:
        key, workload = self._workload(request)
        if workload is None:
            return _missing(key)
        answer = _scale(key, workload)
        writer = self._writers.get(key)
        if writer is not None:  # the other writer acts after our answer is taken
            workload.replicas, workload.resource_version = writer.replicas, self._version()
            writer.times -= 1
            if writer.times <= 0:
                del self._writers[key]
        return web.json_response(answer)

    async def _put_scale(self, request: web.Request) -> web.StreamResponse:
        key, workload = self._workload(request)
        if workload is None:
            return _missing(key)
        body = await _json_body(request)
        metadata = body.get("metadata")
        if not isinstance(metadata, dict) or metadata.get("name") != key[2]:
            return status(400, "the name of the object does not match the name on the URL")
        return self._write_scale(key, workload, body)

    async def _patch_scale(self, request: web.Request) -> web.StreamResponse:
        key, workload = self._workload(request)
        if workload is None:
            return _missing(key)
        if request.content_type != "application/merge-patch+json":
            return status(
                415,
                "the body of the request was in an unknown format - "
                "accepted media types include: application/merge-patch+json",
            )
        return self._write_scale(key, workload, await _json_body(request))

    def _write_scale(
        self, key: tuple[str, str, str], workload: Workload, body: Mapping[str, object]
    ) -> web.StreamResponse:
        if _stale(body, workload.resource_version):
            return _conflict(f"{key[1]}.apps", key[2])
        spec = body.get("spec")
        replicas = spec.get("replicas", 0) if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return status(
                422,
                f'Scale.autoscaling "{key[2]}" is invalid: spec.replicas: '
                f"Invalid value: {replicas!r}",
            )
        workload.replicas, workload.resource_version = replicas, self._version()
        return web.json_response(_scale(key, workload))

    def _workload(self, request: web.Request) -> tuple[tuple[str, str, str], Workload | None]:
        info = request.match_info
        key = (info["namespace"], info["plural"], info["name"])
        return key, self.workloads.get(key)

    # -- horizontal pod autoscalers ------------------------------------------------------

    async def _list_hpas(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        items = [
            hpa.to_json() for (ns, _), hpa in sorted(self.autoscalers.items()) if ns == namespace
        ]
        return web.json_response(
            {
                "kind": "HorizontalPodAutoscalerList",
                "apiVersion": "autoscaling/v2",
                "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items,
            }
        )

    async def _get_hpa(self, request: web.Request) -> web.StreamResponse:
        hpa = self.autoscalers.get((request.match_info["namespace"], request.match_info["name"]))
        if hpa is None:
            return _missing(("", "horizontalpodautoscalers", request.match_info["name"]))
        return web.json_response(hpa.to_json())

    async def _patch_hpa(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hpa = self.autoscalers.get((request.match_info["namespace"], name))
        if hpa is None:
            return _missing(("", "horizontalpodautoscalers", name))
        if request.content_type != "application/merge-patch+json":
            return status(415, "unsupported patch type")
        body = await _json_body(request)
        if _stale(body, hpa.resource_version):
            return _conflict("horizontalpodautoscalers.autoscaling", name)
        spec = body.get("spec")
        floor = spec.get("minReplicas", hpa.min_replicas) if isinstance(spec, dict) else None
        if not isinstance(floor, int) or not 1 <= floor <= hpa.max_replicas:
            return status(
                422,
                f'HorizontalPodAutoscaler.autoscaling "{name}" is invalid: '
                f"spec.minReplicas: Invalid value: {floor!r}",
            )
        hpa.min_replicas, hpa.resource_version = floor, self._version()
        return web.json_response(hpa.to_json())

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return status(404, "the server could not find the requested resource")

    def _version(self) -> str:
        return str(next(self._versions))


def status(code: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A `Status` answer as the API server writes it."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    return web.json_response(body, status=code, headers=headers)


def _missing(key: tuple[str, str, str]) -> web.Response:
    group = ".apps" if key[1] in ("deployments", "statefulsets") else ".autoscaling"
    return status(404, f'{key[1]}{group} "{key[2]}" not found')


def _conflict(resource: str, name: str) -> web.Response:
    return status(
        409,
        f'Operation cannot be fulfilled on {resource} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try "
        "again",
    )


def _stale(body: Mapping[str, object], current: str) -> bool:
    metadata = body.get("metadata")
    wanted = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    return wanted is not None and wanted != current


def _scale(key: tuple[str, str, str], workload: Workload) -> dict[str, object]:
    namespace, _, name = key
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": workload.resource_version,
        },
        # Like the real server: `replicas` is omitted from the spec when it is 0.
        "spec": {"replicas": workload.replicas} if workload.replicas else {},
        "status": {"replicas": workload.replicas, "selector": f"app={name}"},
    }


async def _json_body(request: web.Request) -> dict[str, object]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise web.HTTPBadRequest(text="not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="not a JSON object")
    return body


def _common_name(peer: object) -> str:
    subject = peer.get("subject", ()) if isinstance(peer, dict) else ()
    return next((value for rdn in subject for name, value in rdn if name == "commonName"), "")


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
