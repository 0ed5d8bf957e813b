"""One error family (``controller.errors``): every boundary's errors derive from ``WebhookServiceError``,
and the reconciler decides from ``retryable`` and ``retry_after`` alone."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import controller
from controller.backoff import Backoff
from controller.cattle.errors import (
    CattleAnswerTooLarge,
    CattleBusy,
    CattleError,
    CattleNotFound,
    CattleProtocolError,
    CattleRequestError,
    CattleTimeout,
    CattleUnauthorized,
    CattleUnavailable,
)
from controller.cli import CommandError, UsageError
from controller.drivers.base import ConfirmTimeout, TargetRefused
from controller.drivers.contract import ForwardError, MalformedBody, UpstreamTimeout
from controller.errors import WebhookServiceError
from controller.kube.errors import (
    KubeConflict,
    KubeError,
    KubeInvalid,
    KubeNotFound,
    KubeUnauthorized,
    KubeUnavailable,
)
from controller.listener.alertmanager import MalformedPayload
from controller.listener.errors import HttpError
from controller.listener.signature import SignatureError, SignatureInvalid, SignatureSecretUnavailable
from controller.push_events import MalformedPush
from controller.receivers.crd import CrdError
from controller.receivers.yamlsafe import ManifestError
from controller.sandbox.seed import SeedError
from controller.sandbox.state import Refusal
from controller.store.base import HitRateLimited, StoreError, StoreUnavailable
from controller.store.sqlite import SqliteStore
from controller.tokens import TokenError, TokenRevoked
from tests.test_reconciler import Sleeps
from tests.test_reconciler_applier import TARGET, FakeApplier, accept, reconciler

ROOTS = [
    CattleError, KubeError, StoreError, TokenError, SignatureError, ForwardError, TargetRefused,
    ConfirmTimeout, MalformedBody, MalformedPush, MalformedPayload, CrdError, ManifestError, SeedError,
    UsageError, CommandError, HttpError,
]  # fmt: skip
# The sandbox plays Cattle: its refusals are Cattle's answers, which our client turns into CattleErrors.
NOT_OURS = {Refusal}

# What the reconciler must retry: anything that may pass later unchanged.
RETRYABLE: list[tuple[WebhookServiceError, bool]] = [
    (CattleUnavailable("GET /x: connection refused"), True),
    (CattleTimeout("GET /x: no answer within 5s"), True),
    (CattleBusy("409 upgrading", status=409), True),
    (CattleUnauthorized("401", status=401), True),  # a person may fix the keys meanwhile
    (CattleProtocolError("not JSON"), True),
    (CattleNotFound("404", status=404), False),
    (CattleRequestError("400", status=400), False),
    (CattleAnswerTooLarge("over 1 MiB"), False),
    (KubeUnavailable("503", status=503), True),
    (KubeUnauthorized("403", status=403), True),
    (KubeNotFound("404", status=404), False),
    (KubeConflict("409", status=409), False),  # the store's compare-and-swap loop reads again itself
    (KubeInvalid("422", status=422), False),
    (StoreError("steps no longer pending"), True),
    (StoreUnavailable("database is locked"), True),
    (HitRateLimited(2.0), True),
    (ConfirmTimeout("did not reach scale 3"), True),
    (TargetRefused("a global service has no scale"), False),
    (SignatureSecretUnavailable("no secret"), True),
    (SignatureInvalid("wrong HMAC"), False),
    (TokenRevoked("revoked"), False),
    (UpstreamTimeout("no answer"), False),  # answered 504 at once; the sender decides
    (MalformedBody("tag", "missing"), False),
]


@pytest.mark.parametrize("root", ROOTS, ids=lambda cls: cls.__name__)
def test_every_boundarys_error_root_derives_from_the_base(root: type[Exception]) -> None:
    assert issubclass(root, WebhookServiceError)


def test_no_exception_class_in_the_package_is_outside_the_family() -> None:
    strays = []
    for module_info in pkgutil.walk_packages(controller.__path__, "controller."):
        if module_info.name == "controller.__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            own_exception = cls.__module__ == module.__name__ and issubclass(cls, BaseException)
            if own_exception and not issubclass(cls, WebhookServiceError) and cls not in NOT_OURS:
                strays.append(f"{cls.__module__}.{cls.__qualname__}")
    assert strays == []


@pytest.mark.parametrize(("error", "retryable"), RETRYABLE, ids=lambda v: type(v).__name__)
def test_retryable_are_exactly_the_errors_the_reconciler_must_retry(
    error: WebhookServiceError, retryable: bool
) -> None:
    assert error.retryable is retryable


def test_retry_after_comes_from_the_failing_side() -> None:
    assert CattleUnavailable("503", status=503, retry_after=7.0).retry_after == 7.0
    assert KubeUnavailable("429", status=429, retry_after=3.0).retry_after == 3.0
    assert HitRateLimited(2.5).retry_after == 2.5
    assert SignatureSecretUnavailable("no secret").retry_after == 5.0
    assert ConfirmTimeout("not yet").retry_after is None


async def test_the_reconciler_retries_a_retryable_error_after_its_retry_after(store: SqliteStore) -> None:
    applier = FakeApplier(errors=[CattleUnavailable("503", status=503, retry_after=7.0)])
    await accept(store, "acme/web:v1.1")
    sleeps = Sleeps()
    r = reconciler(store, applier, sleep=sleeps, backoff=Backoff(base=0.01, cap=30.0))
    r.wake(TARGET)
    await r.idle()
    assert sleeps.delays == [7.0]
    assert len(applier.calls) == 2
    assert await store.targets_with_work() == []


async def test_the_reconciler_fails_the_intents_on_a_permanent_error_without_waiting(
    store: SqliteStore,
) -> None:
    applier = FakeApplier(errors=[CattleNotFound("GET /v2-beta/projects/1a5: 404 gone", status=404)])
    await accept(store, "acme/web:v1.1")
    sleeps = Sleeps()
    r = reconciler(store, applier, sleep=sleeps)
    r.wake(TARGET)
    await r.idle()
    hit = (await store.read_status()).last_hits["default/upgrade"]
    assert (hit.intent_state, hit.reason) == ("failed", "CattleNotFound: GET /v2-beta/projects/1a5: 404 gone")
    assert sleeps.delays == []


async def test_an_exception_outside_the_family_is_a_bug_and_is_not_retried(store: SqliteStore) -> None:
    applier = FakeApplier(errors=[TimeoutError("from a stray asyncio.timeout")])
    [hit] = await accept(store, "acme/web:v1.1")
    sleeps = Sleeps()
    r = reconciler(store, applier, sleep=sleeps)
    r.wake(TARGET)
    await r.idle()
    assert sleeps.delays == []
    assert [p.hit_id for p in await store.pending_intents(TARGET)] == [hit]  # left for the next run
