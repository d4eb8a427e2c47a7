"""Reading the Kubernetes manifests in deploy/kubernetes for tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def documents(directory: Path = KUBERNETES) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


def manifest(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`) in deploy/kubernetes."""
    found = [
        d
        for _, d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in deploy/kubernetes"
    return found[0]


def containers_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec")
    template = spec.get("template", {}).get("spec", {}) if isinstance(spec, Mapping) else {}
    return list(template.get("containers", []))


def containers() -> Iterator[dict[str, Any]]:
    for _, document in documents():
        yield from containers_of(document)


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = manifest("Deployment")["spec"]["template"]["spec"]
    return spec


def daemon_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    return dict(container)


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The literal `env` values (not those from Secrets or fields)."""
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
