"""What the listener's views need, in one frozen value built by the wiring (``controller.wiring``).

Its own module so that the app (``controller.listener.app``) and the views
(``controller.listener.handlers``) both import it, and neither imports the other's module for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverSet
from controller.health import Health
from controller.listener.signature import SignatureSecrets
from controller.metrics import Metrics
from controller.receiver_set import ReceiverSet
from controller.settings import Settings
from controller.store.base import IntentStore
from controller.tokens import TokenVerifier


@dataclass(frozen=True)
class ListenerDeps:
    settings: Settings
    receiver_set: ReceiverSet
    verifier: TokenVerifier
    store: IntentStore
    drivers: DriverSet
    metrics: Metrics
    wake: Callable[[str], None]  # called with the target id after a hit is recorded as "accepted"
    clock: Callable[[], float] = time.time
    # Receivers' sender secrets (spec.signature); without a Kubernetes client only secretFile works.
    signatures: SignatureSecrets = field(default_factory=SignatureSecrets)
    # What pass-through drivers (Forwarders) forward with; None: they answer 502.
    driver_ctx: DriverContext | None = None
    # What /readyz reports; built by ``readiness`` unless the wiring adds checks of its own.
    health: Health | None = None


def readiness(store: IntentStore, receiver_set: ReceiverSet) -> Health:
    """The checks every listener has: the store accepts writes, and the receivers were loaded."""
    health = Health()
    health.add("store", lambda: store.unavailable_reason())
    health.add("receivers", lambda: None if receiver_set.loaded else "the receivers are not loaded yet")
    return health
