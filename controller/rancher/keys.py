"""Rancher 1.6's trigger credentials, as far as this service keeps them.

Rancher's trigger URLs carry ``?key=<random string>&projectId=<project>``; the key was stored in
Cattle (a ``genericObject`` of kind ``webhookReceiver``) and looked up on every hit. An imported
receiver keeps only the key's SHA-256, in its spec (``spec.rancherKeySha256``), not in an annotation:
the spec is what the store keeps of a receiver's last good declaration, so the digest comes back
whenever the receiver does (a restart with a broken file) and no annotation can be lost on the way.
A digest alone opens nothing, so a manifest or a copy of the store holds no usable URL.

The oldest Rancher URLs carry ``?token=<JWT>`` instead, signed RS256 with Cattle's key, with the claims
``{projectId, uuid, driver, config}``. Rancher checked such a token by looking its ``uuid`` up as a
generic object's ``key`` (the receiver's key *was* that uuid then), so the same digest names the
receiver: no second identifier is stored. Verifying one needs Cattle's public key, which an operator
may give (``--rancher-public-key``); without it such tokens stay refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import WebhookServiceError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

KEY_DIGEST_FIELD = "rancherKeySha256"  # the spec field that holds the digest
NAME_ANNOTATION = "webhook-service.dev/rancher-name"  # the receiver's name in Rancher, which may be any text
LEGACY_ALGORITHM = "RS256"


class RancherKeyError(WebhookServiceError):
    """Cattle's public key file can't be used."""


def key_digest(key: str) -> str:
    """The hex SHA-256 of a Rancher key: what is kept of it, and what a hit's key is looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def load_public_key(path: Path | None) -> RSAPublicKey | None:
    """Cattle's RSA public key from a PEM file (None: no file, no legacy tokens)."""
    # Imported here: the command line reads this module's error, and must not pay for cryptography.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    if path is None:
        return None
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as e:
        raise RancherKeyError(f"cannot read Cattle's public key {path}: {e.strerror}") from e
    except ValueError as e:
        raise RancherKeyError(f"{path} is not a PEM public key") from e
    if not isinstance(key, RSAPublicKey):
        raise RancherKeyError(f"{path} is not an RSA public key (Rancher signed its tokens with RS256)")
    return key
