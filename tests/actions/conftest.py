"""The Kubernetes action tests' shared fake API server and its test CA."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.kube_api import FakeKubeAPI, KubePKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> KubePKI:
    return KubePKI.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def api(pki: KubePKI) -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI(pki) as server:
        yield server
