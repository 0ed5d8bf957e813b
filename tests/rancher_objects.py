"""Receivers as Rancher 1.6's webhook service stored them in Cattle: ``genericObject`` s of kind
``webhookReceiver``, one per driver, with the config fields and omissions of Rancher's Go structs
(``type`` inside each config, zero values left out, forwardPost's port as text, intervalMillis in
Rancher's unit). Shared by the sandbox, converter and end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "1a5"
BASE = "http://rancher.example:8080/v1-webhooks/endpoint"

SCALE_SERVICE_KEY = "CK7XSNU2zuAq8h7bfs66cLY5G9yMQ0mI85irdjzM"
SCALE_HOST_KEY = "FjuOImdDpf2ZBzGyQ4GS0vYZgtdSZzkjJPYsqX1i"
UPGRADE_KEY = "woEF9onHryTC81QMqlY0lRacA6EgTO46l1nvAeiB"
FORWARD_KEY = "7a57YOx2ZXmVNEgNNRWk7CIntCLK1uiEgMN1FuuX"
# A receiver from before Rancher switched to random keys: its key was the uuid of its ?token= JWT.
LEGACY_UUID = "dcb06c45-16a2-47d8-a5ad-7ea1cdb70b17"


def generic_object(name: str, key: str, driver: str, config: dict[str, Any], url: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "kind": "webhookReceiver",
        "key": key,
        "resourceData": {
            "url": url or f"{BASE}?key={key}&projectId={PROJECT}",
            "driver": driver,
            "config": {**config, "type": driver},
        },
    }


SCALE_SERVICE = generic_object(
    "Scale up web!",
    SCALE_SERVICE_KEY,
    "scaleService",
    {"serviceId": "1s7", "amount": 2, "action": "up", "min": 1, "max": 10},
)
SCALE_HOST = generic_object(
    "add worker",
    SCALE_HOST_KEY,
    "scaleHost",
    {"hostSelector": {"role": "worker"}, "amount": 1, "action": "up", "min": 1, "max": 5},
)
SERVICE_UPGRADE = generic_object(
    "deploy web",
    UPGRADE_KEY,
    "serviceUpgrade",
    {
        "serviceSelector": {"app": "web"},
        "tag": "v1.4.2",
        "payloadFormat": "dockerhub",
        "batchSize": 1,
        "intervalMillis": 2,
    },
)
FORWARD_POST = generic_object(
    "relay",
    FORWARD_KEY,
    "forwardPost",
    {"projectId": PROJECT, "serviceName": "web", "port": "8080", "path": "/hooks"},
)
LEGACY = generic_object(
    "old scale down",
    LEGACY_UUID,
    "scaleService",
    {"serviceId": "1s7", "amount": 1, "action": "down", "min": 1, "max": 10},
    url=f"{BASE}?token=<a JWT signed by Cattle>",
)
ALL = [SCALE_SERVICE, SCALE_HOST, SERVICE_UPGRADE, FORWARD_POST, LEGACY]


def cattle_key() -> rsa.RSAPrivateKey:
    """A stand-in for Cattle's RSA key pair (Rancher's webhook service verified with its public half)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_public_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def legacy_token(key: rsa.RSAPrivateKey, obj: dict[str, Any] = LEGACY, project: str = PROJECT) -> str:
    """The ``?token=`` of a receiver's oldest URL, with the claims Rancher signed: no expiry, the
    receiver's ``uuid`` (its key), its project, driver and config."""
    data = obj["resourceData"]
    claims = {"projectId": project, "uuid": obj["key"], "driver": data["driver"], "config": data["config"]}
    return jwt.encode(claims, key, algorithm="RS256")
