"""Whether the configured Cattle can be used at all: reached, and accepting the service's credentials.

The Cattle client reports the outcome of every request it sends here (``CattleClient.reachability``),
so the state follows what the service really sees: the reconciler's passes, the drivers' reads, the
start-up probe. Only three kinds of failure say something about Cattle as a whole — no answer (or a
5xx), credentials refused (401/403), an answer that is not Cattle's — and set the problem; any other
answer (a 404 for a missing service, a 409 for a busy one) shows Cattle reached and the key accepted,
and clears it.
"""

from __future__ import annotations

from controller.cattle.errors import (
    CattleError,
    CattleProtocolError,
    CattleUnauthorized,
    CattleUnavailable,
)

NOT_YET: str = "not reached yet"


class CattleReachability:
    """The last word on reaching Cattle: ``problem`` is None when the last request got through."""

    def __init__(self) -> None:
        self.problem: str | None = NOT_YET

    def succeeded(self) -> None:
        self.problem = None

    def failed(self, error: CattleError) -> None:
        if isinstance(error, CattleUnauthorized):
            self.problem = f"credentials refused: {error.message}"
        elif isinstance(error, CattleUnavailable | CattleProtocolError):
            self.problem = f"unreachable: {error.message}"
        else:
            self.problem = None

    def check(self) -> str | None:
        """The ``/readyz`` check: why Cattle can't be used, or None."""
        return self.problem
