"""``scaleWorkload``: scale a Kubernetes Deployment or StatefulSet in the receiver's own namespace.

Design points:

- It reads and writes the workload's ``scale`` subresource (``.../deployments/NAME/scale``), not the
  workload itself. Every kind with a ``/scale`` answers the same ``autoscaling/v1`` ``Scale`` shape, so
  one code path serves Deployments and StatefulSets (and could serve any other such kind), and a merge
  patch of ``spec.replicas`` there touches nothing else: it can't race with a rollout or a GitOps tool
  editing the pod template, and needs only ``*/scale`` permissions.
- A HorizontalPodAutoscaler targeting the workload is a refusal (``TargetRefused``), checked before
  every read and every write. The HPA rewrites ``spec.replicas`` on its own schedule, so a receiver
  and an HPA would fight over it and the folded desired scale would mean nothing; retrying can't fix
  that, only a person removing one of the two can. The driver is a ``TargetGate``, so the operator
  shows the same message in the Receiver's Ready condition before any hit arrives.
- ``apply`` returns as soon as the API server has recorded the new ``spec.replicas``; it does not wait
  for pods to become ready. Readiness may never come for reasons that are not ours (quota, image
  pulls, unschedulable pods), and the recorded desired count is exactly what this service owns: the
  workload controller converges the pods from there.
- A missing workload is a refusal too (the intents fail with its name); any other ``KubeError``
  propagates, and the reconciler retries the retryable ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict, cast

from controller.drivers._step import (
    STEP_FIELDS,
    StepConfig,
    check_bounds,
    step_action,
    step_intent,
    step_properties,
)
from controller.drivers.base import DriverContext, TargetRefused
from controller.drivers.contract import ConfigSchema, GateRefusal, config_of
from controller.kube.client import DEPLOYMENTS, HPAS, STATEFULSETS, KubeClient, Ref
from controller.kube.errors import KubeNotFound
from controller.manifest import ObjectMeta, ReceiverSpec
from controller.model import Problem, ScaleIntent, Target

WorkloadKind = Literal["Deployment", "StatefulSet"]

WORKLOADS: Mapping[str, Ref] = {"Deployment": DEPLOYMENTS, "StatefulSet": STATEFULSETS}
WORKLOAD_GROUP = "apps"
HPA_REASON = "HorizontalPodAutoscalerConflict"
DRIVER_CONFIG_FIELD = "scaleWorkloadConfig"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ScaleWorkloadConfig(StepConfig):
    kind: WorkloadKind
    name: str


CONFIG_SCHEMA: ConfigSchema = {
    "type": "object",
    "description": (
        "Settings of the scaleWorkload driver. Required when driver is scaleWorkload. It scales a "
        "workload in the receiver's own namespace through its scale subresource; it is refused while "
        "a HorizontalPodAutoscaler targets that workload."
    ),
    "required": ["kind", "name", *STEP_FIELDS],
    "properties": {
        "kind": {
            "type": "string",
            "enum": ["Deployment", "StatefulSet"],
            "description": "The kind of the workload to scale (apps/v1).",
        },
        "name": {
            "type": "string",
            "maxLength": 253,
            "pattern": DNS1123_SUBDOMAIN,
            "description": "The workload's name (a DNS-1123 subdomain), in the receiver's namespace.",
        },
        **step_properties(
            action="Whether one hit scales the workload up or down.",
            amount="How many replicas one accepted hit adds or removes.",
            below="The scale is never taken below this many replicas.",
            above="The scale is never taken above this many replicas.",
        ),
    },
}


class ScaleSpec(TypedDict, total=False):
    replicas: int  # omitted by the API server when 0


class ScaleStatus(TypedDict, total=False):
    replicas: int
    selector: str


class Scale(TypedDict, total=False):
    """``autoscaling/v1`` Scale: what a workload's ``/scale`` subresource answers."""

    apiVersion: str
    kind: Literal["Scale"]
    metadata: ObjectMeta
    spec: ScaleSpec
    status: ScaleStatus


class CrossVersionObjectReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str


class HorizontalPodAutoscalerSpec(TypedDict, total=False):
    scaleTargetRef: CrossVersionObjectReference
    minReplicas: int
    maxReplicas: int


class HorizontalPodAutoscaler(TypedDict, total=False):
    """``autoscaling/v2`` HorizontalPodAutoscaler, only the fields read here."""

    apiVersion: str
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec


class ScaleWorkloadDriver:
    name = "scaleWorkload"
    config_field = DRIVER_CONFIG_FIELD
    config_schema = CONFIG_SCHEMA
    summary = (
        "scaleWorkload scales a Kubernetes Deployment or StatefulSet in the receiver's own namespace "
        "(operator mode only); its settings go in scaleWorkloadConfig."
    )

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        return check_bounds(workload_config(spec), self.config_field)

    def action(self, spec: ReceiverSpec) -> str:
        return step_action(workload_config(spec))

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = workload_config(spec)
        return self._target(namespace, config["kind"], config["name"])

    def target_from_key(self, key: str) -> Target:
        # Namespaces, kinds and names never contain "/", so the key splits back unambiguously.
        parts = key.split("/")
        if len(parts) != 3 or not all(parts):
            raise TargetRefused(f"malformed scaleWorkload target key {key!r} (want namespace/kind/name)")
        namespace, kind, name = parts
        return self._target(namespace, kind, name)

    def _target(self, namespace: str, kind: str, name: str) -> Target:
        return Target(
            driver=self.name,
            key=f"{namespace}/{kind}/{name}",
            project_id=None,
            claims={"namespace": namespace, "kind": kind, "name": name},
        )

    def intent(self, spec: ReceiverSpec) -> ScaleIntent:
        return step_intent(workload_config(spec))

    async def refusal(self, target: Target, ctx: DriverContext) -> GateRefusal | None:
        if ctx.kube is None:
            return None  # standalone mode: every hit is refused with why (see _checked)
        claims = target.claims
        conflict = await hpa_conflict(ctx.kube, claims["namespace"], claims["kind"], claims["name"])
        return None if conflict is None else GateRefusal(HPA_REASON, conflict)

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        kube, ref = await self._checked(target, ctx)
        try:
            scale = cast(Scale, await kube.get(ref))
        except KubeNotFound as e:
            raise TargetRefused(f"{describe(target)} not found") from e
        return replicas(scale)

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        """Merge-patch the scale's ``spec.replicas``. Returns the replicas the API server recorded."""
        kube, ref = await self._checked(target, ctx)
        try:
            scale = cast(Scale, await kube.patch(ref, {"spec": {"replicas": desired}}))
        except KubeNotFound as e:
            raise TargetRefused(f"{describe(target)} not found") from e
        return replicas(scale)

    async def _checked(self, target: Target, ctx: DriverContext) -> tuple[KubeClient, Ref]:
        """The client and the workload's scale subresource, once no HPA claims the workload."""
        if ctx.kube is None:
            raise TargetRefused("scaleWorkload needs the Kubernetes operator mode (webhook-service operator)")
        namespace, kind, name = target.claims["namespace"], target.claims["kind"], target.claims["name"]
        workloads = WORKLOADS.get(kind)
        if workloads is None:
            raise TargetRefused(f"{describe(target)}: kind {kind!r} is not one of {', '.join(WORKLOADS)}")
        conflict = await hpa_conflict(ctx.kube, namespace, kind, name)
        if conflict is not None:
            raise TargetRefused(conflict)
        return ctx.kube, workloads.named(name, namespace, subresource="scale")


async def hpa_conflict(kube: KubeClient, namespace: str, kind: str, name: str) -> str | None:
    """Why the workload can't be scaled by a receiver (an HPA manages it), or None if it can."""
    try:
        hpas = cast(list[HorizontalPodAutoscaler], await kube.list(HPAS.within(namespace)))
    except KubeNotFound:
        return None  # no autoscaling/v2 served (Kubernetes < 1.23): no HPA of it can exist
    for hpa in hpas:
        if targets(hpa, kind, name):
            hpa_name = hpa.get("metadata", {}).get("name", "?")
            return (
                f"{kind} {namespace}/{name} is managed by HorizontalPodAutoscaler {hpa_name}; "
                "a receiver and an HPA would fight over its replicas"
            )
    return None


def targets(hpa: HorizontalPodAutoscaler, kind: str, name: str) -> bool:
    ref = hpa.get("spec", {}).get("scaleTargetRef", {})
    api_version = ref.get("apiVersion")
    # Any version of the apps group names the same object; refusing too eagerly is the safe side.
    group_ok = api_version is None or api_version.partition("/")[0] == WORKLOAD_GROUP
    return group_ok and ref.get("kind") == kind and ref.get("name") == name


def replicas(scale: Scale) -> int:
    return int(scale.get("spec", {}).get("replicas", 0))


def describe(target: Target) -> str:
    claims = target.claims
    return f"{claims['kind']} {claims['namespace']}/{claims['name']}"


def workload_config(spec: ReceiverSpec) -> ScaleWorkloadConfig:
    config: ScaleWorkloadConfig = config_of(spec, DRIVER_CONFIG_FIELD)
    return config


DRIVER = ScaleWorkloadDriver()
