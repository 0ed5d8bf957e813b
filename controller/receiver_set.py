"""The in-memory set of active receivers and their current tokens.

The listener checks every hit against it, so revoking a token (removing or re-minting a receiver)
takes effect the moment the receiver set changes — no cache can outlive it. The standalone watcher and
the Kubernetes operator are its writers; both run on the event loop, so no lock is needed.

Receivers imported from Rancher are also found by the digest of their Rancher key
(``controller.rancher.keys``): an index kept beside the receivers, changed by the same ``put`` and
``remove``, so a removed receiver's key stops working at the same moment as its token.
"""

from __future__ import annotations

from collections.abc import Iterator

from controller.model import ActiveReceiver, Receiver


class ReceiverSet:
    def __init__(self) -> None:
        self._by_key: dict[str, ActiveReceiver] = {}
        self._by_rancher_digest: dict[str, str] = {}  # Rancher key digest -> receiver key
        self.loaded = False  # set once the first full load is done; /readyz waits for it

    def get(self, key: str) -> ActiveReceiver | None:
        return self._by_key.get(key)

    def by_rancher_digest(self, digest: str) -> ActiveReceiver | None:
        """The active receiver imported with the Rancher key of this digest, if any."""
        key = self._by_rancher_digest.get(digest)
        return self._by_key.get(key) if key is not None else None

    def put(self, active: ActiveReceiver) -> None:
        self.remove(active.key)
        self._by_key[active.key] = active
        digest = active.receiver.rancher_key_sha256
        if digest is not None:
            self._by_rancher_digest[digest] = active.key

    def remove(self, key: str) -> ActiveReceiver | None:
        active = self._by_key.pop(key, None)
        digest = active.receiver.rancher_key_sha256 if active is not None else None
        if digest is not None and self._by_rancher_digest.get(digest) == key:
            del self._by_rancher_digest[digest]
        return active

    def receivers_of(self, target_id: str) -> list[Receiver]:
        """The active receivers acting on a target (``DriverContext.receivers_of``)."""
        return [a.receiver for a in self._by_key.values() if a.receiver.target.id == target_id]

    def keys(self) -> set[str]:
        return set(self._by_key)

    def __iter__(self) -> Iterator[ActiveReceiver]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)
