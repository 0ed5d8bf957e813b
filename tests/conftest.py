"""Fixtures shared by several test modules. Each builds fresh state in the test's tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import pytest
import yaml
from pytest_aiohttp import AiohttpClient

from controller.sandbox.seed import SandboxSeed
from controller.store.sqlite import SqliteStore
from tests.kubeemu import SYSTEM_NAMESPACES, KubeEmulator
from tests.processes import Sandbox, write_seed
from tests.sandbox_harness import START, MakeClient, client_factory
from tests.toolbox import FakeClock

CRDS = Path(__file__).parent.parent / "crds"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real, open SQLite store in a fresh folder."""
    store = SqliteStore(tmp_path / "webhook.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    """The sandbox's clock, at a fixed start; tests move ``clock.now``."""
    return FakeClock(START)


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, seed: SandboxSeed, clock: FakeClock) -> MakeClient:
    """Test clients on a fresh sandbox app with the requesting module's ``seed`` fixture."""
    return client_factory(aiohttp_client, seed, clock)


@pytest.fixture
async def kube() -> AsyncIterator[KubeEmulator]:
    """An in-process Kubernetes API (tests/kubeemu.py) on 127.0.0.1 with the resources the product uses.

    The product's CRDs (crds/) are applied, so Receivers and IntentLedgers are pruned, defaulted and
    validated by their schemas (tests/kubeschema.py); the cluster's own namespaces exist, and a test
    creates any other it puts objects in (``kube.add_namespaces(...)``).

    Talk to it at ``kube.url`` (``KubeClient(session, str(kube.url), {})``, or the ``kubeconfig``
    fixture); seed objects through the API or with ``kube.objects['apps/v1/deployments', 'ns', 'web']
    = {...}``; assert on ``kube.objects[...]`` (and on the requests: ``list(kube)``).
    """
    async with KubeEmulator() as emulator, kmock.Server(emulator):
        for crd in sorted(CRDS.glob("*.yaml")):
            document = yaml.safe_load(crd.read_text())
            if document.get("kind") == "CustomResourceDefinition":
                emulator.apply_crd(document)
        emulator.declare("v1/secrets", "Secret", namespaced=True)
        emulator.declare("v1/events", "Event", namespaced=True)
        emulator.declare("v1/namespaces", "Namespace", namespaced=False)
        emulator.declare(
            "apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", namespaced=False
        )
        for workload in ("apps/v1/deployments", "apps/v1/statefulsets"):
            kind = "Deployment" if workload.endswith("deployments") else "StatefulSet"
            emulator.declare(workload, kind, namespaced=True, subresources={"status", "scale"})
        emulator.declare(
            "autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", namespaced=True
        )
        emulator.declare("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", namespaced=False)
        emulator.declare("kopf.dev/v1/kopfpeerings", "KopfPeering", namespaced=True)
        emulator.declare("coordination.k8s.io/v1/leases", "Lease", namespaced=True)
        emulator.objects["kopf.dev/v1/clusterkopfpeerings", None, "webhook-service"] = {}
        emulator.add_namespaces(*SYSTEM_NAMESPACES)
        yield emulator


@pytest.fixture
def kubeconfig(kube: KubeEmulator, tmp_path: Path) -> Path:
    """A kubeconfig file whose current context points at the ``kube`` emulator (with a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": str(kube.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": "dummy-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A ``cattle-sandbox`` process seeded with project 1a5: web (1s7, scale 1) and worker (1s8, scale 2)."""
    box = Sandbox(tmp_path, write_seed(tmp_path / "seed.yaml")).start_and_wait()
    yield box
    box.stop()
