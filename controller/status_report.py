"""``status`` and ``trigger-url``: read a (possibly running) service's state folder, never write it.

They read the SQLite store read-only from another process, so they work while the service runs and
can't disturb it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from controller.drivers import load_drivers
from controller.redact import mask_url
from controller.store.base import StoreUnavailable
from controller.store.sqlite_schema import DB_NAME
from controller.store.sqlite_snapshot import Snapshot, read_snapshot
from controller.tokens import KEYS_DIR, KeyRing, restore_token, trigger_url


def trigger_url_from_state(state_dir: Path, namespace: str, name: str, public_url: str | None) -> str | None:
    """The receiver's URL, its token signed again from the stored claims with the state's keys (the
    store keeps only a digest). None when there is no such receiver; StoreUnavailable when the token
    can't be restored (its key is gone: the running service re-mints it)."""
    snapshot = read_snapshot(state_dir / DB_NAME)
    for stored in snapshot.tokens:
        if (stored.namespace, stored.name) == (namespace, name):
            base = public_url or snapshot.meta.get("public_url") or "http://127.0.0.1:8085"
            target = load_drivers()[stored.driver].target_from_key(stored.target_id.partition(":")[2])
            try:
                keyring = KeyRing.load(state_dir / KEYS_DIR)
            except ValueError as e:  # no key files at all
                raise StoreUnavailable(f"no signing keys in {state_dir / KEYS_DIR}: {e}") from e
            token = restore_token(keyring, stored, target)
            if token is None:
                raise StoreUnavailable(f"the token of {stored.receiver} cannot be restored from {state_dir}")
            return trigger_url(base, token, target.project_id)
    return None


def render_status(state_dir: Path) -> str:
    return format_snapshot(read_snapshot(state_dir / DB_NAME))


def format_snapshot(snapshot: Snapshot) -> str:
    receiver_rows = []
    for token in sorted(snapshot.tokens, key=lambda t: t.receiver):
        hit = snapshot.status.last_hits.get(token.receiver)
        if hit is None:
            last, outcome = "-", "-"
        else:
            last = when(hit.received_at)
            outcome = hit.outcome
            if hit.intent_state is not None:
                outcome += f" ({hit.intent_state}"
                if hit.before is not None and hit.after is not None:
                    outcome += f" {hit.before}->{hit.after}" + (" clamped" if hit.clamped else "")
                outcome += ")"
            if hit.reason:
                outcome += f": {hit.reason}"
        receiver_rows.append([token.receiver, token.driver, token.target_id.partition(":")[2], last, outcome])
    target_rows = []
    for target in sorted(snapshot.status.targets, key=lambda t: t.target_id):
        target_rows.append(
            [
                target.target_id,
                dash(target.desired),
                dash(target.observed),
                str(snapshot.status.pending.get(target.target_id, 0)),
                "yes" if target.converged else "no",
                target.last_error or "-",
            ]
        )
    parts = [
        # Masked again: a store written by an older version kept the URL with its credentials.
        f"Cattle: {mask_url(snapshot.meta.get('cattle', 'unknown (the service has not started yet)'))}",
        "",
        "RECEIVERS",
        table(["RECEIVER", "DRIVER", "TARGET", "LAST HIT", "OUTCOME"], receiver_rows),
        "",
        "TARGETS",
        table(["TARGET", "DESIRED", "OBSERVED", "PENDING", "CONVERGED", "LAST ERROR"], target_rows),
    ]
    if snapshot.problems:
        parts += ["", "MANIFEST PROBLEMS", *(f"  {p}" for p in snapshot.problems)]
    return "\n".join(parts)


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "  (none)"
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )
