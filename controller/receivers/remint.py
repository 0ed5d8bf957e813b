"""When a receiver's token must be re-minted: one rule for every place a token is kept.

Tokens are kept in two places — the SQLite store in standalone mode (``controller.receivers.sync``),
a trigger Secret in operator mode (``controller.operator.trigger_secrets``) — and each keeper
records what the token was issued for as an ``Issued``. The decision is a pure function of that
record, the receiver now and the key ring's key ids, so both modes re-mint for the same reasons.

A token is kept as long as what it names is unchanged, so a URL survives restarts and edits of the
amount or bounds. It is re-minted when what the token *says* changes (driver, target), when a person
asks for it (the ``webhook-service.dev/token-generation`` annotation), when the receiver was
re-created under the same name (another uid), or when its signing key has left the key ring. What
only one keeper can tell (a stored digest that no longer matches, a Secret without its token) stays
with that keeper.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from controller.model import Receiver


@dataclass(frozen=True)
class Issued:
    """What a receiver's current token was issued for, as its keeper recorded it."""

    jti: str
    kid: str
    uid: str
    target_id: str
    token_generation: str
    # None when the keeper does not record it: a trigger Secret records the target, whose id begins
    # with the driver's name, so a change of driver still shows as a change of target.
    driver: str | None = None


def remint_reason(issued: Issued | None, receiver: Receiver, kids: Collection[str]) -> str | None:
    """Why the token ``issued`` can't stay for ``receiver`` (a phrase for a log line), or None when it can."""
    if issued is None:
        return "no token yet"
    if issued.driver is not None and issued.driver != receiver.driver:
        return f"driver changed from {issued.driver} to {receiver.driver}"
    if issued.target_id != receiver.target.id:
        return f"target changed from {issued.target_id} to {receiver.target.id}"
    if issued.token_generation != receiver.token_generation:
        return "token generation changed"
    if receiver.uid is not None and receiver.uid != issued.uid:
        return "uid changed (the receiver was re-created)"
    if issued.kid not in kids:
        return f"its signing key {issued.kid} is no longer in the key ring"
    return None
