"""Making the receiver set and the stored tokens match the full set of receivers — the only place that
mints or revokes trigger tokens.

A token is kept or re-minted (the old one superseded at once) by the rule the operator's trigger
Secrets follow too (``controller.receivers.remint``); only the store can tell that a stored digest no
longer matches the token its claims sign to, so that check stays here. A receiver that disappears
loses its token at once.

Order matters for failure: a revocation leaves the receiver set before the store, so a failed store write
never leaves a token valid; a new token enters the store before the receiver set, so a URL is never
handed out that a restart would forget. The new and updated token records of one apply are stored in
one transaction, so a start that mints thousands of tokens pays for one commit, not one each. A failed
apply raises; the caller applies again later and, because every step compares with the store (read
again after a failure; after a success, kept as this class left it, since nothing else writes
tokens), the second apply finishes the work of the first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.metrics import Metrics
from controller.model import ActiveReceiver, Receiver
from controller.receiver_set import ReceiverSet
from controller.receivers.remint import Issued, remint_reason
from controller.store.base import Store, StoredToken
from controller.tokens import KeyRing, mint_token, restore_token, token_digest

logger = logging.getLogger(__name__)

# Checking a receiver may sign a token (~0.2 ms): thousands at a start must not hold the listener's loop.
YIELD_SECONDS = 0.005


class ReceiverSync:
    def __init__(
        self,
        *,
        store: Store,
        keyring: KeyRing,
        receiver_set: ReceiverSet,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._receiver_set = receiver_set
        self._metrics = metrics
        self._clock = clock
        # Per receiver: the object last applied and its stored record since. The watcher hands the
        # same object again for a file it did not re-read, so a change to one file among thousands
        # checks (and signs) nothing for the others.
        self._applied: dict[str, tuple[Receiver, StoredToken]] = {}
        self._applied_kids: list[str] = []
        # The store's tokens as the last apply left them (None after a failure: read them again). Only
        # this class writes tokens, and the state lock keeps other processes out, so no list is read
        # per change.
        self._stored: dict[str, StoredToken] | None = None

    async def apply(self, receivers: Sequence[Receiver]) -> None:
        """Make the receiver set and the store's tokens match ``receivers`` (the full set)."""
        wanted = {r.key: r for r in receivers}
        stored, self._stored = self._stored, None  # forgotten until this apply has fully succeeded
        if stored is None:
            stored = {t.receiver: t for t in await self._store.list_tokens()}
        for key in sorted(set(stored) - set(wanted)):
            await self._revoke(stored[key])
            del stored[key]
        for key in self._receiver_set.keys() - set(wanted):
            self._receiver_set.remove(key)  # active without a stored token: the store was reset under us
        for key in self._applied.keys() - set(wanted):
            del self._applied[key]
        if self._applied_kids != self._keyring.kids:  # a key added or retired: every token is checked
            self._applied, self._applied_kids = {}, self._keyring.kids
        changes: list[_Change] = []
        ran_since = time.monotonic()
        for receiver in receivers:
            if time.monotonic() - ran_since > YIELD_SECONDS:
                await asyncio.sleep(0)
                ran_since = time.monotonic()
            existing = stored.get(receiver.key)
            if existing is not None and self._unchanged(receiver, existing):
                continue
            change = self._plan(receiver, existing)
            if change.write is None and existing is not None:
                self._receiver_set.put(change.active)
                self._applied[receiver.key] = (receiver, existing)
            else:
                changes.append(dataclasses.replace(change, given=receiver))
        await self._write(changes)
        stored.update((c.active.receiver.key, c.write) for c in changes if c.write is not None)
        self._stored = stored
        self._metrics.receivers.set(len(self._receiver_set))
        self._receiver_set.loaded = True

    def _unchanged(self, receiver: Receiver, existing: StoredToken) -> bool:
        """Whether this very receiver object was applied with this stored record, and is still active."""
        applied = self._applied.get(receiver.key)
        active = self._receiver_set.get(receiver.key)
        return (
            applied is not None
            and applied[0] is receiver
            and applied[1] == existing
            and active is not None
            and active.jti == existing.jti
        )

    def _plan(self, receiver: Receiver, existing: StoredToken | None) -> _Change:
        """What the receiver needs: its active form, and the token record to store first (if any)."""
        reason = remint_reason(_issued(existing), receiver, self._keyring.kids)
        token = None if existing is None or reason is not None else self._current_token(receiver, existing)
        if existing is not None and reason is None and token is None:
            reason = "its stored digest does not match the token its claims sign to"
        if existing is not None and token is not None:
            receiver = dataclasses.replace(receiver, uid=existing.uid)
            # Same token: keep the newest last good declaration (what a restart rebuilds from), and
            # scrub a token an older version stored in plain text.
            kept = dataclasses.replace(
                existing,
                token=token_digest(token),
                source=receiver.source,
                spec=receiver.spec_fingerprint(),
            )
            active = ActiveReceiver(
                receiver, uid=existing.uid, jti=existing.jti, token=token, kid=existing.kid
            )
            return _Change(active, write=kept if kept != existing else None)
        uid = receiver.uid or (existing.uid if existing else uuid.uuid4().hex)
        receiver = dataclasses.replace(receiver, uid=uid)
        jti, now = uuid.uuid4().hex, self._clock()
        token, kid = mint_token(self._keyring, receiver=receiver, uid=uid, jti=jti, now=now)
        stored = StoredToken(
            namespace=receiver.namespace,
            name=receiver.name,
            uid=uid,
            jti=jti,
            kid=kid,
            token=token_digest(token),
            driver=receiver.driver,
            target_id=receiver.target.id,
            token_generation=receiver.token_generation,
            issued_at=now,
            source=receiver.source,
            spec=receiver.spec_fingerprint(),
        )
        active = ActiveReceiver(receiver, uid=uid, jti=jti, token=token, kid=kid)
        return _Change(active, write=stored, minted=True, superseded=existing, reason=reason)

    async def _write(self, changes: list[_Change]) -> None:
        """Store every changed token in one transaction, then make them active: a start that mints
        thousands of tokens costs one commit, not one each."""
        if not changes:
            return
        try:
            await self._store.put_tokens([c.write for c in changes if c.write is not None])
        except Exception:
            for change in changes:
                if change.superseded is not None:  # the old token was meant to stop working: fail closed
                    self._receiver_set.remove(change.active.receiver.key)
            raise
        for change in changes:
            self._receiver_set.put(change.active)
            if change.given is not None and change.write is not None:
                self._applied[change.given.key] = (change.given, change.write)
            if not change.minted:
                continue
            key, jti = change.active.receiver.key, change.active.jti
            if change.superseded is None:
                logger.info("minted a token for receiver %s (jti %s): new receiver", key, jti)
            else:
                logger.info(
                    "minted a token for receiver %s (jti %s), superseding jti %s: %s",
                    key,
                    jti,
                    change.superseded.jti,
                    change.reason,
                )

    def _current_token(self, receiver: Receiver, existing: StoredToken) -> str | None:
        """The stored token itself: from the receiver set when it holds that jti, else signed again from
        its claims (at start) and checked against the stored digest. None when it can't be had."""
        active = self._receiver_set.get(receiver.key)
        if active is not None and active.jti == existing.jti:
            return active.token
        return restore_token(self._keyring, existing, receiver.target)

    async def _revoke(self, token: StoredToken) -> None:
        self._receiver_set.remove(token.receiver)
        await self._store.delete_token(token.namespace, token.name)
        logger.info("revoked the token of receiver %s (jti %s): receiver removed", token.receiver, token.jti)


@dataclass(frozen=True)
class _Change:
    """A receiver whose token record must be stored before it is made active."""

    active: ActiveReceiver
    write: StoredToken | None
    minted: bool = False  # a new token (else the same token, its record updated)
    superseded: StoredToken | None = None  # the record of the token the new one replaces
    reason: str | None = None  # why it was replaced
    given: Receiver | None = None  # the receiver as the caller gave it


def _issued(stored: StoredToken | None) -> Issued | None:
    if stored is None:
        return None
    return Issued(
        jti=stored.jti,
        kid=stored.kid,
        uid=stored.uid,
        target_id=stored.target_id,
        token_generation=stored.token_generation,
        driver=stored.driver,
    )
