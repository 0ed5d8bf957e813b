"""A Receiver manifest's raw shapes, as TypedDicts: what a file or the API server hands over.

They describe a document before it is checked; code past the loader works with the frozen values in
``controller.model``. A driver's own config is declared by its driver module.
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    annotations: dict[str, str]
    labels: dict[str, str]


class RateLimitSpec(TypedDict):
    requests: int
    perSeconds: int


class SecretRef(TypedDict):
    name: str  # a Secret in the receiver's namespace


class SignatureSpec(TypedDict, total=False):
    scheme: Required[Literal["standard-webhooks", "github"]]
    secretRef: SecretRef
    secretFile: str


class ReceiverSpec(TypedDict, total=False):
    """What every receiver's spec has. The driver's own config (``spec.<driver>Config``) is declared by
    its driver module and read with ``controller.drivers.contract.config_of``."""

    driver: str
    cattleSecretRef: SecretRef
    signature: SignatureSpec
    fireOn: list[str]
    cooldownSeconds: int
    dedupeWindowSeconds: int
    rateLimit: RateLimitSpec
    suspend: bool
    rancherKeySha256: str  # see controller.rancher.keys
