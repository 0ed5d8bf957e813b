"""ReceiverSync: when tokens are kept, re-minted and revoked, against the real SQLite store."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from controller.drivers.scale_service import DRIVER
from controller.metrics import Metrics
from controller.model import ActiveReceiver, Receiver, TokenClaims
from controller.receiver_set import ReceiverSet
from controller.receivers import sync as sync_module
from controller.receivers.sync import ReceiverSync
from controller.store.base import StoredToken, StoreUnavailable
from controller.store.sqlite import SqliteStore
from controller.tokens import (
    KeyRing,
    TokenRevoked,
    TokenSuperseded,
    TokenVerifier,
    check_current,
    token_digest,
)
from tests.specs import config_of, receiver_spec

NOW = 1_750_000_000.0


def receiver(
    name: str = "web-up",
    *,
    service: str = "1s7",
    amount: int = 1,
    generation: str = "",
    uid: str | None = None,
) -> Receiver:
    spec = receiver_spec(
        "scaleService",
        {
            "projectId": "1a5",
            "serviceId": service,
            "action": "up",
            "amount": amount,
            "min": 1,
            "max": 10,
        },
    )
    return Receiver(
        namespace="default",
        name=name,
        driver="scaleService",
        spec=spec,
        target=DRIVER.target(spec, "default"),
        token_generation=generation,
        uid=uid,
    )


class Harness:
    def __init__(self, tmp_path: Path, store: SqliteStore) -> None:
        self.store = store
        self.keyring = KeyRing.load_or_create(tmp_path / "keys", clock=lambda: NOW)
        self.verifier = TokenVerifier(self.keyring)
        self.metrics = Metrics()
        self.receiver_set = ReceiverSet()
        self.sync = self.restart()

    def restart(self) -> ReceiverSync:
        """A fresh receiver set and sync on the same store and keys, as after a process restart."""
        self.receiver_set = ReceiverSet()
        self.sync = ReceiverSync(
            store=self.store,
            keyring=self.keyring,
            receiver_set=self.receiver_set,
            metrics=self.metrics,
            clock=lambda: NOW,
        )
        return self.sync

    def active(self, name: str = "web-up") -> ActiveReceiver:
        active = self.receiver_set.get(f"default/{name}")
        assert active is not None
        return active

    def claims(self, name: str = "web-up") -> TokenClaims:
        return self.verifier.verify(self.active(name).token)

    def check(self, claims: TokenClaims) -> None:
        check_current(claims, self.receiver_set.get(claims.receiver_key), "1a5")


@pytest.fixture
def h(tmp_path: Path, store: SqliteStore) -> Harness:
    return Harness(tmp_path, store)


async def test_a_new_receiver_gets_a_stored_token(h: Harness) -> None:
    await h.sync.apply([receiver()])
    stored = await h.store.get_token("default", "web-up")
    assert stored is not None
    assert (stored.token, stored.jti, stored.target_id) == (
        token_digest(h.active().token),
        h.active().jti,
        "scaleService:1a5/1s7",
    )


async def test_the_store_file_holds_no_token_in_plain_text(h: Harness) -> None:
    await h.sync.apply([receiver()])
    await h.store.close()
    token = h.active().token.encode()
    files = [h.store.path, *h.store.path.parent.glob(h.store.path.name + "-*")]
    assert not any(token in f.read_bytes() or token.split(b".")[2] in f.read_bytes() for f in files)


async def test_a_restart_restores_the_token_from_its_claims_and_digest(h: Harness) -> None:
    await h.sync.apply([receiver()])
    token = h.active().token
    h.restart()
    await h.sync.apply([receiver()])
    assert h.active().token == token


async def test_a_token_an_older_version_stored_in_plain_text_is_kept_and_scrubbed(h: Harness) -> None:
    await h.sync.apply([receiver()])
    token = h.active().token
    stored = await h.store.get_token("default", "web-up")
    assert stored is not None
    await h.store.put_tokens([dataclasses.replace(stored, token=token)])
    h.restart()
    await h.sync.apply([receiver()])
    assert h.active().token == token
    assert await h.store.get_token("default", "web-up") == stored


async def test_a_stored_digest_that_does_not_match_mints_a_new_token(h: Harness) -> None:
    await h.sync.apply([receiver()])
    token = h.active().token
    stored = await h.store.get_token("default", "web-up")
    assert stored is not None
    await h.store.put_tokens([dataclasses.replace(stored, token=token_digest("something else"))])
    h.restart()
    await h.sync.apply([receiver()])
    assert h.active().token != token


async def test_a_new_token_is_current_for_its_receiver(h: Harness) -> None:
    await h.sync.apply([receiver()])
    h.check(h.claims())


async def test_apply_marks_the_registry_loaded_and_counts_receivers(h: Harness) -> None:
    await h.sync.apply([receiver("a"), receiver("b")])
    assert h.receiver_set.loaded
    assert h.metrics.registry.get_sample_value("webhook_receivers") == 2


async def test_an_empty_first_apply_still_marks_the_registry_loaded(h: Harness) -> None:
    await h.sync.apply([])
    assert h.receiver_set.loaded


async def test_the_token_survives_a_restart(h: Harness) -> None:
    await h.sync.apply([receiver()])
    before = h.active().token
    await h.restart().apply([receiver()])
    assert h.active().token == before


async def test_editing_the_amount_keeps_the_token_and_takes_effect(h: Harness) -> None:
    await h.sync.apply([receiver()])
    before = h.active().token
    await h.sync.apply([receiver(amount=3)])
    assert h.active().token == before
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 3


async def test_the_same_receiver_applied_again_is_not_checked_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher hands the same objects for files it did not re-read: thousands cost nothing."""
    same = receiver()
    await h.sync.apply([same])
    token = h.active().token
    checked: list[Receiver] = []
    monkeypatch.setattr(sync_module, "remint_reason", lambda _issued, r, _kids: checked.append(r))
    await h.sync.apply([same])
    assert checked == []
    assert h.active().token == token


async def test_a_new_receiver_object_is_checked_even_when_it_compares_equal(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.sync.apply([receiver()])
    checked: list[Receiver] = []
    monkeypatch.setattr(sync_module, "remint_reason", lambda _issued, r, _kids: checked.append(r))
    await h.sync.apply([receiver(amount=3)])  # Receiver equality leaves the spec out
    assert [r.name for r in checked] == ["web-up"]
    assert config_of(h.active().receiver.spec, "scaleServiceConfig")["amount"] == 3


async def test_after_a_successful_apply_the_tokens_are_not_listed_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.sync.apply([receiver("a"), receiver("b")])

    async def unavailable() -> list[StoredToken]:
        raise StoreUnavailable("not expected")

    monkeypatch.setattr(h.store, "list_tokens", unavailable)
    await h.sync.apply([receiver("b", amount=2), receiver("c")])
    assert h.receiver_set.keys() == {"default/b", "default/c"}


async def test_after_a_failed_apply_the_tokens_are_listed_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.sync.apply([receiver()])
    listed: list[int] = []
    list_tokens = h.store.list_tokens

    async def counting() -> list[StoredToken]:
        listed.append(1)
        return await list_tokens()

    async def unavailable(tokens: Sequence[StoredToken]) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(h.store, "list_tokens", counting)
    monkeypatch.setattr(h.store, "put_tokens", unavailable)
    with pytest.raises(StoreUnavailable):
        await h.sync.apply([receiver(generation="2")])
    monkeypatch.undo()
    monkeypatch.setattr(h.store, "list_tokens", counting)
    await h.sync.apply([receiver(generation="2")])
    assert listed == [1]
    h.check(h.claims())


async def test_a_new_token_generation_supersedes_the_old_token(h: Harness) -> None:
    await h.sync.apply([receiver()])
    old = h.claims()
    await h.sync.apply([receiver(generation="2")])
    with pytest.raises(TokenSuperseded):
        h.check(old)
    h.check(h.claims())


async def test_a_new_target_supersedes_the_old_token(h: Harness) -> None:
    await h.sync.apply([receiver()])
    old = h.claims()
    await h.sync.apply([receiver(service="1s8")])
    with pytest.raises(TokenSuperseded):
        h.check(old)
    assert h.claims().target == {"projectId": "1a5", "serviceId": "1s8"}


async def test_a_superseding_token_keeps_the_uid(h: Harness) -> None:
    await h.sync.apply([receiver()])
    uid = h.active().uid
    await h.sync.apply([receiver(generation="2")])
    assert h.active().uid == uid == h.active().receiver.uid


async def test_a_new_uid_from_the_manifest_revokes_the_old_token(h: Harness) -> None:
    await h.sync.apply([receiver(uid="first")])
    old = h.claims()
    await h.sync.apply([receiver(uid="second")])
    with pytest.raises(TokenRevoked):
        h.check(old)
    assert h.active().uid == "second"


async def test_a_removed_receiver_loses_its_token(h: Harness) -> None:
    await h.sync.apply([receiver("a"), receiver("b")])
    old = h.claims("a")
    await h.sync.apply([receiver("b")])
    with pytest.raises(TokenRevoked):
        h.check(old)
    assert await h.store.get_token("default", "a") is None
    assert h.metrics.registry.get_sample_value("webhook_receivers") == 1


async def test_a_token_whose_key_is_gone_is_reminted(h: Harness, tmp_path: Path) -> None:
    await h.sync.apply([receiver()])
    old_kid = h.active().kid
    h.keyring = KeyRing.load_or_create(tmp_path / "other-keys", clock=lambda: NOW)
    h.verifier = TokenVerifier(h.keyring)
    await h.restart().apply([receiver()])
    assert h.active().kid != old_kid
    h.check(h.claims())


async def test_a_failed_supersede_fails_closed(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await h.sync.apply([receiver()])

    async def unavailable(tokens: Sequence[StoredToken]) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(h.store, "put_tokens", unavailable)
    with pytest.raises(StoreUnavailable):
        await h.sync.apply([receiver(generation="2")])
    assert h.receiver_set.get("default/web-up") is None


async def test_mint_and_revoke_are_logged_without_the_token(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.receivers.sync")
    await h.sync.apply([receiver()])
    token, jti = h.active().token, h.active().jti
    await h.sync.apply([])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all(jti in m and "default/web-up" in m for m in messages)
    assert not any(token in m for m in messages)
