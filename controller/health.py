"""Readiness of the service's parts, for ``/readyz``.

Each part that can be degraded registers one check: a function answering ``None`` when the part is
fine, or one sentence saying why it is not. ``/readyz`` answers 503 as soon as any check names a
reason, and shows every reason, so an operator reading the probe's body knows which part to look at
(the store lost its file, the receivers were never loaded, a manifest cannot be read...).

Some parts are *degraded but serving*: a receivers file that cannot be read keeps its last good
receivers, so the service still answers hits correctly. Such a part reports through ``notes``:
shown in ``/readyz`` but not failing it, since taking the replica out of a load balancer would only
turn a stale manifest into an outage.
"""

from __future__ import annotations

from collections.abc import Callable

Check = Callable[[], str | None]


class Health:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._notes: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """A part whose reason makes the service unready."""
        self._checks[name] = check

    def add_note(self, name: str, check: Check) -> None:
        """A part whose reason is shown but does not make the service unready."""
        self._notes[name] = check

    def failing(self) -> dict[str, str]:
        """Every failing part with its reason."""
        return {name: reason for name, check in self._checks.items() if (reason := check()) is not None}

    def report(self) -> dict[str, object]:
        failing = self.failing()
        notes = {name: reason for name, check in self._notes.items() if (reason := check()) is not None}
        return {
            "status": "unavailable" if failing else "ok",
            "checks": {name: name not in failing for name in self._checks},
            "failing": sorted(failing),
            "reasons": failing,
            "notes": notes,
        }
