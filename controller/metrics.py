"""Prometheus metrics, on an explicit registry so tests (and several apps in one process) never share
counters. One ``Metrics`` object is built per service and passed to the parts that count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.hits = Counter(
            "webhook_hits_total",
            "Trigger hits answered 200, by receiver and outcome.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.hit_errors = Counter(
            "webhook_hit_errors_total",
            "Trigger requests answered with an error, by status and code.",
            ["status", "code"],
            registry=r,
        )
        self.hit_latency = Histogram(
            "webhook_hit_duration_seconds",
            "Time from request to answer on the trigger endpoint.",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.reconciles = Counter(
            "webhook_reconcile_total",
            "Reconcile passes per target and result.",
            ["target", "result"],
            registry=r,
        )
        self.cattle_requests = Counter(
            "webhook_cattle_requests_total",
            "Requests to Cattle by method and HTTP status (0: no answer).",
            ["method", "code"],
            registry=r,
        )
        self.desired_scale = Gauge(
            "webhook_target_desired_scale",
            "Desired scale of a target, as last folded.",
            ["target"],
            registry=r,
        )
        self.observed_scale = Gauge(
            "webhook_target_observed_scale",
            "Scale last read from the target.",
            ["target"],
            registry=r,
        )
        self.pending_intents = Gauge(
            "webhook_target_pending_intents",
            "Accepted hits of a target not yet folded.",
            ["target"],
            registry=r,
        )
        self.receivers = Gauge("webhook_receivers", "Receivers currently active.", registry=r)
        self.manifest_problems = Gauge(
            "webhook_receiver_manifest_problems",
            "Problems found in receiver manifests at the last load.",
            registry=r,
        )
