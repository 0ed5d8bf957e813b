"""Whether this replica is the one kopf's peering lets handle Receivers, for work kopf does not run.

kopf pauses its handlers in every replica but the live one with the highest priority; a task of our
own (the resync over all Receivers) is not paused with them, so it asks here first. The answer
applies kopf's own rule to the ClusterKopfPeering's status, where each replica keeps its priority
and when it was last seen: active when no other live replica has a priority as high or higher (kopf
pauses both replicas of a tie). A missing peering object means kopf is paused too: not active.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from controller.kube.client import KubeClient, Ref
from controller.kube.errors import KubeNotFound

CLUSTER_PEERINGS = Ref("kopf.dev", "v1", "clusterkopfpeerings")
DEFAULT_LIFETIME = 60  # seconds: kopf's, for a peer entry that does not say


class PeeringCheck:
    def __init__(
        self,
        client: KubeClient,
        name: str,
        *,
        identity: str,
        priority: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._ref = CLUSTER_PEERINGS.named(name)
        self._identity = identity
        self._priority = priority
        self._clock = clock

    async def active(self) -> bool:
        try:
            peering = await self._client.get(self._ref)
        except KubeNotFound:
            return False
        return is_active(peering.get("status") or {}, self._identity, self._priority, self._clock())


def is_active(peers: Mapping[str, Any], identity: str, priority: int, now: float) -> bool:
    """kopf's rule: no other live peer's priority is as high as ours."""
    for peer_id, peer in peers.items():
        if peer_id == identity or not isinstance(peer, Mapping):
            continue
        if _alive(peer, now) and int(peer.get("priority") or 0) >= priority:
            return False
    return True


def _alive(peer: Mapping[str, Any], now: float) -> bool:
    lastseen = peer.get("lastseen")
    if not isinstance(lastseen, str):
        return True  # kopf counts a peer that never said when it was seen as seen now
    seen = datetime.fromisoformat(lastseen).timestamp()
    return seen + int(peer.get("lifetime") or DEFAULT_LIFETIME) > now
