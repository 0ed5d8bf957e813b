"""The driver contract: what every driver is, what some drivers can do, and the set of them.

Every driver is a ``Driver``: its name, its config field and that field's schema fragment (from
which ``controller.receivers.crd`` generates the CRD), ``check`` (meaning beyond the schema),
``target`` and ``target_from_key`` (a target rebuilt from its key, since intents outlive their
receiver), and ``action`` (what a receiver of it does, in words, for status).

What a driver does with a hit is a *capability*, one Protocol each, and a driver has exactly one way
to act:

- ``Scaler`` — the hit's intent is a scale step from the spec (``intent``); the reconciler folds
  intents between ``observe`` and ``apply``, so a scaler never sees concurrency.
- ``IntentApplier`` — the pending intents are carried out by the driver itself, not folded into a
  scale (e.g. serviceUpgrade). It reads its intents from the hit's body, so it is a ``BodyReader``.
- ``Forwarder`` — the hit is passed through and answered synchronously; nothing is recorded.

and may have these besides:

- ``BodyReader`` — the hit's body decides whether it acts and what it asks for (``decide``),
  instead of the listener's Alertmanager parsing and ``Scaler.intent``;
- ``TargetGate`` — a target may be refused for a reason someone must fix (e.g. an HPA already scales
  the workload): the operator shows it in the Receiver's Ready condition before any hit arrives;
- ``IntentDescriber`` — an intent that is not a scale step says what it asks for in words (e.g. the
  image a serviceUpgrade rolls out), so the status views never describe it in scale words.

``DriverSet`` sorts the drivers by capability once, when they are loaded, and refuses a driver that
does not keep the contract (no way to act, or two). The listener, the reconciler and the operator
read the capability they need from it; nothing outside ``controller.drivers`` names a driver.

Capabilities are ``runtime_checkable`` Protocols, checked only here: an ``isinstance`` check against
one costs about 15 µs, a tenth of a hit's whole budget at full load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, runtime_checkable

from controller.drivers.base import DriverContext
from controller.errors import WebhookServiceError
from controller.http_headers import end_to_end
from controller.manifest import ReceiverSpec
from controller.model import Problem, Receiver, ScaleIntent, Target
from controller.store.base import FoldStep, PendingIntent

ConfigSchema = Mapping[str, Any]  # an OpenAPI v3 schema of an object, as the CRD holds it


def config_of(spec: ReceiverSpec, field: str) -> Any:
    """A driver's config in a spec. ``ReceiverSpec`` declares only what every receiver has; the schema
    has checked the config's shape by the time a driver reads it, and the driver knows its type."""
    return cast(Mapping[str, Any], spec)[field]


@runtime_checkable
class Driver(Protocol):
    name: str  # the value of spec.driver, e.g. "scaleService"
    config_field: str  # the spec field holding its config, e.g. "scaleServiceConfig"
    config_schema: ConfigSchema  # that field's schema, with a description of every property
    summary: str  # one sentence on what it does, for spec.driver's description in the CRD

    def check(self, spec: ReceiverSpec) -> list[Problem]: ...

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        """The receiver's target; ``namespace`` is the receiver's (workloads live next to it)."""
        ...

    def target_from_key(self, key: str) -> Target:
        """Rebuild a target from ``Target.key``: intents outlive the receiver that accepted them."""
        ...

    def action(self, spec: ReceiverSpec) -> str:
        """What one hit does, in words (the Receiver's ``status.action``)."""
        ...


@runtime_checkable
class Scaler(Protocol):
    def intent(self, spec: ReceiverSpec) -> ScaleIntent: ...

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        """The target's current scale."""
        ...

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        """Set the scale, wait until the target shows it, and return the scale seen."""
        ...


@dataclass(frozen=True)
class Decision:
    """What a hit's body asks for: act (with ``intent``, a JSON object) or be ignored (with ``reason``)."""

    disposition: Literal["act", "ignored"]
    reason: str | None = None
    intent: dict[str, Any] | None = None


class MalformedBody(WebhookServiceError):
    """The body is not what the receiver is configured to read; ``field`` names what is wrong.
    The listener answers it 400 ``malformed_body``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@runtime_checkable
class BodyReader(Protocol):
    def decide(self, spec: ReceiverSpec, body: bytes, content_type: str) -> Decision:
        """Called after the suspend check; raises ``MalformedBody``."""
        ...


@runtime_checkable
class IntentApplier(Protocol):
    async def apply_intents(
        self, target: Target, pending: Sequence[PendingIntent], ctx: DriverContext
    ) -> list[FoldStep]:
        """Carry out ``pending`` (in order) and return one step per intent, once all are done.

        The intents stay pending until this returns, so it must be idempotent: it observes the
        target first and continues work an interrupted pass started instead of starting it again.
        A step's ``after`` is what the intent achieved as a number (serviceUpgrade: how many services
        run the pushed image; 0 for an intent superseded by a newer one). The reconciler records the
        last step's ``after`` as the target's "desired" value, which for these drivers is not a scale.
        """
        ...


TOKEN_PARAMS = frozenset({"key", "token", "projectId"})  # the listener's own; never forwarded
# Besides hop-by-hop headers: the next hop's own (Host, Content-Length, Expect), the credentials, the
# body's Content-Type (``ForwardedHit.content_type``) and Content-Encoding (the listener has decoded
# the body, so the coding no longer applies), and Accept-Encoding (the answer goes back decoded and
# without its coding, so the upstream must use one the forwarding client decodes).
UNFORWARDED_HEADERS = frozenset(
    {
        "host",
        "authorization",
        "content-length",
        "content-type",
        "content-encoding",
        "accept-encoding",
        "expect",
    }
)


@dataclass(frozen=True)
class ForwardedHit:
    body: bytes
    content_type: str  # as sent, parameters included ("" when the hit had none)
    query: list[tuple[str, str]]  # the hit's query in order, without TOKEN_PARAMS
    headers: list[tuple[str, str]]  # the hit's other headers in order, as ``forwarded_headers`` keeps them


@dataclass(frozen=True)
class ForwardAnswer:
    status: int
    body: bytes
    content_type: str  # "" when the upstream sent none


class ForwardError(WebhookServiceError):
    """No usable answer from upstream; ``status`` / ``code`` are the listener's answer. An upstream's
    own error status is an answer, passed on as is."""

    status = 502
    code = "upstream_unavailable"


class UpstreamUnavailable(ForwardError):
    """Cattle (or its proxy) could not be reached, or no Cattle is configured for the receiver."""


class UpstreamTimeout(ForwardError):
    status = 504
    code = "upstream_timeout"


class UpstreamTooLarge(ForwardError):
    code = "upstream_too_large"


@runtime_checkable
class Forwarder(Protocol):
    async def forward(self, receiver: Receiver, hit: ForwardedHit, ctx: DriverContext) -> ForwardAnswer: ...


def forwarded_query(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in pairs if name not in TOKEN_PARAMS]


def forwarded_headers(pairs: Iterable[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    """The end-to-end headers a pass-through hands on (a sender's signature and event headers among
    them), without ``UNFORWARDED_HEADERS`` and without any header whose value holds the hit's token."""
    return [
        (name, value)
        for name, value in end_to_end(pairs)
        if name.lower() not in UNFORWARDED_HEADERS and token not in value
    ]


@dataclass(frozen=True)
class GateRefusal:
    reason: str  # a CamelCase word, the Ready condition's reason
    message: str


@runtime_checkable
class TargetGate(Protocol):
    async def refusal(self, target: Target, ctx: DriverContext) -> GateRefusal | None:
        """Why the target can't be acted on now, for a person to fix; None when it can."""
        ...


@runtime_checkable
class IntentDescriber(Protocol):
    def describe_intent(self, intent: Mapping[str, Any]) -> str:
        """What an accepted intent asks for, in a few words ("roll out nginx:1.2"), for the status views."""
        ...


class DriverContractError(WebhookServiceError):
    """A driver module does not keep the contract: a programming error, found when drivers load."""


class DriverSet(Mapping[str, Driver]):
    """The installed drivers by name, and sorted by capability once (see the module docstring)."""

    def __init__(self, drivers: Iterable[Driver]) -> None:
        self._all: dict[str, Driver] = {}
        self.scalers: dict[str, Scaler] = {}
        self.appliers: dict[str, IntentApplier] = {}
        self.forwarders: dict[str, Forwarder] = {}
        self.readers: dict[str, BodyReader] = {}
        self.gates: dict[str, TargetGate] = {}
        self.describers: dict[str, IntentDescriber] = {}
        for driver in sorted(drivers, key=lambda d: str(getattr(d, "name", ""))):
            self._add(driver)

    def _add(self, driver: Driver) -> None:
        name = getattr(driver, "name", repr(driver))
        if not isinstance(driver, Driver):
            raise DriverContractError(f"driver {name} lacks part of the Driver protocol")
        if name in self._all:
            raise DriverContractError(f"two drivers are named {name}")
        ways = [
            kind
            for kind, protocol in (
                ("Scaler", Scaler),
                ("IntentApplier", IntentApplier),
                ("Forwarder", Forwarder),
            )
            if isinstance(driver, protocol)
        ]
        if len(ways) != 1:
            raise DriverContractError(
                f"driver {name} must act in exactly one way (Scaler, IntentApplier or Forwarder), not "
                f"{' and '.join(ways) or 'none'}"
            )
        if isinstance(driver, IntentApplier) and not isinstance(driver, BodyReader):
            raise DriverContractError(f"driver {name} applies intents but reads none (not a BodyReader)")
        self._all[name] = driver
        if isinstance(driver, Scaler):
            self.scalers[name] = driver
        if isinstance(driver, IntentApplier):
            self.appliers[name] = driver
        if isinstance(driver, Forwarder):
            self.forwarders[name] = driver
        if isinstance(driver, BodyReader):
            self.readers[name] = driver
        if isinstance(driver, TargetGate):
            self.gates[name] = driver
        if isinstance(driver, IntentDescriber):
            self.describers[name] = driver

    def replacing(self, *drivers: Driver) -> DriverSet:
        """A set with ``drivers`` in place of the ones of the same names (tests tune a driver)."""
        names = {d.name for d in drivers}
        return DriverSet([*(d for n, d in self._all.items() if n not in names), *drivers])

    def __getitem__(self, name: str) -> Driver:
        return self._all[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)
