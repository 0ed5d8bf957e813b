"""The Kubernetes install: the kustomize base, the CRDs it carries, its RBAC, and the examples.

``kubectl kustomize manifests/`` is run for real (Debian's ``kubernetes-client`` in CI; the test skips
locally without kubectl and fails under ``CI=true``, like the Alertmanager test). The RBAC rules and
the CRDs are read from their files, so those tests run everywhere. Example receivers are loaded with
the standalone loader: the CRD is the one schema, so what it accepts the API server accepts too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.drivers import load_drivers
from controller.drivers.contract import DriverSet
from controller.receivers.loader import load_documents, load_paths
from controller.receivers.schema import ReceiverSchema

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "manifests"
PEERING = BASE / "peering"
MONITORING = BASE / "monitoring"
EXAMPLES = BASE / "examples"
CRDS = ROOT / "crds"
BROKEN = Path(__file__).resolve().parent / "manifests" / "broken"
NAMESPACE = "webhook-service"
KUSTOMIZE_TIMEOUT = 120

Document = dict[str, Any]

EXPECTED_OBJECTS = [
    ("ClusterRole", "webhook-service"),
    ("ClusterRoleBinding", "webhook-service"),
    ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
    ("CustomResourceDefinition", "intentledgers.webhook-service.dev"),
    ("CustomResourceDefinition", "receivers.webhook-service.dev"),
    ("Deployment", "webhook-service"),
    ("Namespace", "webhook-service"),
    ("NetworkPolicy", "webhook-service"),
    ("PodDisruptionBudget", "webhook-service"),
    ("Role", "webhook-service-own"),
    ("RoleBinding", "webhook-service-own"),
    ("Service", "webhook-service"),
    ("ServiceAccount", "webhook-service"),
]

# (apiGroup, resource, verb): the operator's whole permission set. A change here is a change on purpose.
EXPECTED_PERMISSIONS = {
    *(("webhook-service.dev", "receivers", v) for v in ("get", "list", "watch", "patch", "create", "delete")),
    ("", "namespaces", "list"),
    *(("webhook-service.dev", "receivers/status", v) for v in ("get", "patch")),
    *(("", "secrets", v) for v in ("get", "create", "update")),
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
    *(("apps", r, v) for r in ("deployments/scale", "statefulsets/scale") for v in ("get", "patch")),
    ("autoscaling", "horizontalpodautoscalers", "list"),
    *(("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")),
}

# Every file in tests/manifests/broken/ and the field paths of its problems, in the loader's order.
BROKEN_FIELDS = {
    "bad-name.yaml": ["metadata.name", "metadata.namespace"],
    "bad-status.yaml": ["status.conditions[0].status"],
    "cattle-secret-ref-missing-name.yaml": ["spec.cattleSecretRef.name", "spec.cattleSecretRef.secret"],
    "max-below-min.yaml": ["spec.scaleServiceConfig.max"],
    "missing-config.yaml": ["spec.scaleServiceConfig"],
    "not-a-mapping.yaml": [""],
    "not-yaml.yaml": [""],
    "one-of-two.yaml": ["spec.scaleServiceConfig.amount"],
    "schema-errors.yaml": [
        "spec.fireOn",
        "spec.rateLimit.perSeconds",
        "spec.scaleServiceConfig.action",
        "spec.scaleServiceConfig.amount",
        "spec.scaleServiceConfig.projectId",
        "spec.scaleServiceConfig.serviceId",
        "spec.suspend",
    ],
    "unknown-field.yaml": ["spec.suspended"],
    "workload-bad-kind.yaml": ["spec.scaleWorkloadConfig.kind"],
    "workload-missing-name.yaml": ["spec.scaleWorkloadConfig.name"],
    "wrong-kind.yaml": ["apiVersion", "kind"],
}


def required_binary(name: str, install: str) -> str:
    """The binary's path; skip without it locally, fail without it in CI (.ci/run installs it)."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"missing {name}: apt-get install -y {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def kustomize(folder: Path) -> list[Document]:
    kubectl = required_binary("kubectl", "kubernetes-client")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=KUSTOMIZE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


@pytest.fixture(scope="module")
def built() -> list[Document]:
    """The objects ``kubectl kustomize manifests/`` builds."""
    return kustomize(BASE)


def the(objects: list[Document], kind: str, name: str = NAMESPACE) -> Document:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(objects: list[Document]) -> Document:
    [only] = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def documents(path: Path) -> list[Document]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def crd_files() -> list[Path]:
    return sorted(p for p in CRDS.glob("*.yaml") if p.name != "kustomization.yaml")


def properties(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node below ``node`` with its path ("status.conditions[].type")."""
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}".lstrip("."), sub
        yield from properties(sub, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield f"{path}[]", node["items"]
        yield from properties(node["items"], f"{path}[]")


def openapi(crd: Document) -> Mapping[str, Any]:
    [version] = crd["spec"]["versions"]
    schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture
def drivers() -> DriverSet:
    return load_drivers()


# -- the kustomize base


def test_base_builds_exactly_the_expected_objects(built: list[Document]) -> None:
    assert sorted((o["kind"], o["metadata"]["name"]) for o in built) == EXPECTED_OBJECTS


def test_namespaced_objects_land_in_the_webhook_service_namespace(built: list[Document]) -> None:
    namespaced = [o for o in built if o["kind"] in {"ServiceAccount", "Deployment", "Service"}]
    assert {o["metadata"].get("namespace") for o in namespaced} == {NAMESPACE}


def test_the_built_crds_are_the_files_in_crds(built: list[Document]) -> None:
    ours = {o["metadata"]["name"]: o for o in built if o["metadata"]["name"].endswith(".webhook-service.dev")}
    from_files = {d["metadata"]["name"]: d for p in crd_files() for d in documents(p)}
    assert ours == from_files


def test_crds_kustomization_lists_every_crd_file() -> None:
    kustomization = yaml.safe_load((CRDS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in crd_files()]


def test_deployment_runs_two_replicas_of_the_operator(built: list[Document]) -> None:
    deployment = the(built, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "webhook-service"
    assert (container(built)["image"], container(built)["command"]) == (
        "webhook-service:0.1.0",
        ["webhook-service", "operator"],
    )


def test_deployment_probes_use_healthz_and_readyz_on_the_http_port(built: list[Document]) -> None:
    main = container(built)
    assert main["ports"] == [
        {"name": "http", "containerPort": 8085, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_deployment_gives_start_up_a_minute_before_liveness_counts(built: list[Document]) -> None:
    startup = container(built)["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_deployment_runs_as_non_root_with_a_read_only_root(built: list[Document]) -> None:
    pod = the(built, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(built)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_deployment_has_an_empty_dir_at_tmp_as_its_only_writable_place(built: list[Document]) -> None:
    pod = the(built, "Deployment")["spec"]["template"]["spec"]
    assert container(built)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [(v["name"], "emptyDir" in v) for v in pod["volumes"]] == [("tmp", True)]


def test_deployment_requests_and_limits(built: list[Document]) -> None:
    assert container(built)["resources"] == {
        "requests": {"cpu": "50m", "memory": "96Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_deployment_environment(built: list[Document]) -> None:
    env = {e["name"]: e for e in container(built)["env"]}
    assert env["WEBHOOK_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["WEBHOOK_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["WEBHOOK_PUBLIC_URL"]["value"] == "http://webhook-service.webhook-service.svc:8085"
    cattle = {name: env[name]["valueFrom"]["secretKeyRef"] for name in env if name.startswith("CATTLE_")}
    assert cattle == {
        "CATTLE_URL": {"name": "webhook-service-cattle", "key": "url", "optional": True},
        "CATTLE_ACCESS_KEY": {"name": "webhook-service-cattle", "key": "accessKey", "optional": True},
        "CATTLE_SECRET_KEY": {"name": "webhook-service-cattle", "key": "secretKey", "optional": True},
    }


def test_service_sends_port_8085_to_the_pods_http_port_and_9090_to_metrics(built: list[Document]) -> None:
    service = the(built, "Service")
    pod_labels = the(built, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8085, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    env = {
        e["name"]: e.get("value")
        for e in the(built, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WEBHOOK_METRICS_LISTEN"] == "0.0.0.0:9090"  # /metrics apart from the trigger port


def test_cluster_role_is_bound_to_the_service_account(built: list[Document]) -> None:
    binding = the(built, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "webhook-service",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "webhook-service", "namespace": NAMESPACE}
    ]


def test_the_kopf_peering_crd_is_cluster_scoped(built: list[Document]) -> None:
    crd = the(built, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "ClusterKopfPeering"
    assert openapi(crd)["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_the_peering_object_is_applied_apart_from_its_crd_and_named_for_the_service() -> None:
    """A fresh cluster does not serve a kind in the same ``kubectl apply`` that creates its CRD."""
    [peering] = kustomize(PEERING)
    assert (peering["apiVersion"], peering["kind"], peering["metadata"]) == (
        "kopf.dev/v1",
        "ClusterKopfPeering",
        {"name": "webhook-service"},
    )


def test_pod_disruption_budget_keeps_one_replica_of_the_operator(built: list[Document]) -> None:
    budget = the(built, "PodDisruptionBudget")
    pod_labels = the(built, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["metadata"]["namespace"] == NAMESPACE


def test_network_policy_admits_hits_from_anywhere_and_metrics_from_labelled_namespaces(
    built: list[Document],
) -> None:
    policy = the(built, "NetworkPolicy")
    pod_labels = the(built, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    hits, metrics = policy["spec"]["ingress"]
    assert hits == {"ports": [{"port": "http", "protocol": "TCP"}]}
    assert metrics == {
        "from": [{"namespaceSelector": {"matchLabels": {"webhook-service.dev/metrics-scraper": "true"}}}],
        "ports": [{"port": "metrics", "protocol": "TCP"}],
    }


def test_examples_are_not_part_of_the_base(built: list[Document]) -> None:
    assert not [o for o in built if o["kind"] in {"Receiver", "Secret"}]


# -- RBAC


def test_rbac_grants_exactly_the_expected_permissions() -> None:
    [role] = [d for d in documents(BASE / "rbac.yaml") if d["kind"] == "ClusterRole"]
    granted = [
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]
    assert sorted(granted) == sorted(EXPECTED_PERMISSIONS)


def test_ledgers_and_leases_are_granted_in_the_operators_namespace_only(built: list[Document]) -> None:
    role = the(built, "Role", "webhook-service-own")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["webhook-service.dev"],
            "resources": ["intentledgers"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    ]
    binding = the(built, "RoleBinding", "webhook-service-own")
    assert binding["roleRef"]["name"] == "webhook-service-own"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "webhook-service", "namespace": NAMESPACE}
    ]


def test_rbac_rules_name_no_wildcards_or_extra_fields() -> None:
    [role] = [d for d in documents(BASE / "rbac.yaml") if d["kind"] == "ClusterRole"]
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])
    assert "aggregationRule" not in role


# -- the CRDs


def test_every_crd_schema_is_structural() -> None:
    """The API server refuses a schema node without a type, unless it preserves unknown fields or is
    an int-or-string (whose type must be left out)."""
    untyped = [
        f"{crd['metadata']['name']}: {path}"
        for p in crd_files()
        for crd in documents(p)
        for path, node in properties(openapi(crd))
        if "type" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_every_list_map_is_keyed_by_required_scalar_fields() -> None:
    """The API server refuses a list-map whose keys are not required scalar fields of its items."""
    wrong = [
        f"{crd['metadata']['name']}: {path}"
        for p in crd_files()
        for crd in documents(p)
        for path, node in properties(openapi(crd))
        if node.get("x-kubernetes-list-type") == "map"
        and not all(
            key in node["items"].get("required", [])
            and node["items"]["properties"][key]["type"] in {"string", "integer", "boolean"}
            for key in node.get("x-kubernetes-list-map-keys") or [None]
        )
    ]
    assert wrong == []


def test_receiver_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = ReceiverSchema.load().openapi["properties"]["status"]["properties"]["conditions"]
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == (
        "map",
        ["type"],
    )


def test_every_intent_ledger_property_is_described() -> None:
    crd = yaml.safe_load((CRDS / "intentledgers.yaml").read_text())
    assert [path for path, node in properties(openapi(crd)) if not node.get("description")] == []


def test_intent_ledger_names_columns_and_no_subresources() -> None:
    crd = yaml.safe_load((CRDS / "intentledgers.yaml").read_text())
    [version] = crd["spec"]["versions"]
    assert (crd["spec"]["group"], crd["spec"]["scope"]) == ("webhook-service.dev", "Namespaced")
    assert crd["spec"]["names"]["shortNames"] == ["ledger"]
    assert "subresources" not in version
    assert [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("Target", ".spec.target"),
        ("Desired", ".ledger.desired"),
        ("Observed", ".ledger.observed"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    assert openapi(crd)["properties"]["ledger"]["x-kubernetes-preserve-unknown-fields"] is True


def test_receiver_printer_columns_read_the_status() -> None:
    crd = yaml.safe_load((CRDS / "receivers.yaml").read_text())
    [version] = crd["spec"]["versions"]
    assert [c["jsonPath"] for c in version["additionalPrinterColumns"]] == [
        ".spec.driver",
        ".status.target",
        ".status.action",
        '.status.conditions[?(@.type=="Ready")].status',
        ".status.lastHit.time",
        ".metadata.creationTimestamp",
    ]
    assert version["subresources"] == {"status": {}}


def test_receiver_status_has_a_schema_of_its_own() -> None:
    status = ReceiverSchema.load().openapi["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    assert sorted(status["properties"]) == [
        "action",
        "conditions",
        "lastHit",
        "observedGeneration",
        "problems",
        "scale",
        "secretName",
        "target",
        "tokenId",
        "tokenKid",
    ]


# -- example receivers


def example_receivers(tmp_path: Path) -> Path:
    """The Receiver documents of manifests/examples/, one file each (the folder also holds a Secret
    and an Alertmanager config, which are not Receivers)."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for index, document in enumerate(documents(path)):
            if document.get("kind") == "Receiver":
                (folder / f"{path.stem}-{index}.yaml").write_text(yaml.safe_dump(document))
    return folder


def test_scale_workload_driver_is_loaded(drivers: DriverSet) -> None:
    assert {"scaleService", "scaleWorkload"} <= set(drivers)


def test_kubernetes_examples_load_without_problems(tmp_path: Path, drivers: DriverSet) -> None:
    receivers, problems = load_paths([example_receivers(tmp_path)], drivers)
    assert problems == []
    assert sorted((r.key, r.driver) for r in receivers) == [
        ("default/api-up", "scaleWorkload"),
        ("default/staging-web-up", "scaleService"),
        ("default/web-down", "scaleService"),
        ("default/web-up", "scaleService"),
    ]


def test_standalone_examples_load_without_problems(drivers: DriverSet) -> None:
    receivers, problems = load_paths([ROOT / "examples" / "receivers"], drivers)
    assert (len(receivers), problems) == (5, [])


def test_new_good_test_manifests_load(drivers: DriverSet) -> None:
    good = Path(__file__).resolve().parent / "manifests" / "good"
    loaded = [load_documents(good / name, drivers) for name in ("workload.yaml", "cattle-secret-ref.yaml")]
    assert [[r.key for r in load.receivers] for load in loaded] == [["shop/queue-up"], ["default/staging-up"]]
    assert [load.problems for load in loaded] == [[], []]


def test_example_secret_holds_the_keys_its_receiver_refers_to() -> None:
    secret, receiver = documents(EXAMPLES / "cattle-secret-ref.yaml")
    assert secret["kind"] == "Secret"
    assert sorted(secret["stringData"]) == ["accessKey", "secretKey", "url"]
    assert receiver["spec"]["cattleSecretRef"] == {"name": secret["metadata"]["name"]}
    assert receiver["metadata"]["namespace"] == secret["metadata"]["namespace"]


def test_alertmanager_example_sends_the_trigger_secret_to_the_service() -> None:
    config = yaml.safe_load((EXAMPLES / "alertmanager.yaml").read_text())
    [receiver] = config["receivers"]
    assert receiver["webhook_configs"] == [
        {
            "url": "http://webhook-service.webhook-service.svc:8085/v1-webhooks/endpoint",
            "http_config": {
                "authorization": {
                    "type": "Bearer",
                    "credentials_file": "/etc/alertmanager/secrets/web-up-trigger/token",
                }
            },
        }
    ]


def test_alertmanager_accepts_the_example_config() -> None:
    amtool = required_binary("amtool", "prometheus-alertmanager")
    result = subprocess.run(
        [amtool, "check-config", str(EXAMPLES / "alertmanager.yaml")],
        capture_output=True,
        text=True,
        timeout=KUSTOMIZE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- broken manifests


def test_every_broken_manifest_has_an_expectation() -> None:
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(BROKEN_FIELDS)


@pytest.mark.parametrize("name", sorted(BROKEN_FIELDS))
def test_broken_manifest_is_refused_naming_the_field(name: str, drivers: DriverSet) -> None:
    load = load_documents(BROKEN / name, drivers)
    assert [p.path for p in load.problems] == BROKEN_FIELDS[name]


def test_the_monitoring_kustomization_scrapes_the_metrics_port_and_its_rules_pass_promtool(
    built: list[Document], tmp_path: Path
) -> None:
    objects = kustomize(MONITORING)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    monitor = the(objects, "ServiceMonitor")
    service = the(built, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in [port["name"] for port in service["spec"]["ports"]]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": the(objects, "PrometheusRule")["spec"]["groups"]}))
    promtool = required_binary("promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_monitoring_kustomization_carries_the_grafana_dashboard_for_the_sidecar() -> None:
    dashboard = the(kustomize(MONITORING), "ConfigMap", "webhook-service-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (MONITORING / "grafana-dashboard.json").read_text()
    assert dashboard["data"] == {"grafana-dashboard.json": committed}
