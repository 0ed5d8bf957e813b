"""The in-memory set of active receivers and their current tokens.

The listener checks every hit against it, so revoking a token (removing or re-minting a receiver)
takes effect the moment the receiver set changes — no cache can outlive it. The standalone watcher and
the Kubernetes operator are its writers; both run on the event loop, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Iterator

from controller.model import ActiveReceiver, Receiver


class ReceiverSet:
    def __init__(self) -> None:
        self._by_key: dict[str, ActiveReceiver] = {}
        self.loaded = False  # set once the first full load is done; /readyz waits for it

    def get(self, key: str) -> ActiveReceiver | None:
        return self._by_key.get(key)

    def put(self, active: ActiveReceiver) -> None:
        self._by_key[active.key] = active

    def remove(self, key: str) -> ActiveReceiver | None:
        return self._by_key.pop(key, None)

    def receivers_of(self, target_id: str) -> list[Receiver]:
        """The active receivers acting on a target (``DriverContext.receivers_of``)."""
        return [a.receiver for a in self._by_key.values() if a.receiver.target.id == target_id]

    def keys(self) -> set[str]:
        return set(self._by_key)

    def __iter__(self) -> Iterator[ActiveReceiver]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)
