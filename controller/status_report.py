"""``status`` and ``trigger-url``: read a (possibly running) service's state folder, never write it.

They read the SQLite store read-only from another process, so they work while the service runs and
can't disturb it. ``status`` shows the same view as the service's status page (``controller.status``),
as tables, JSON or YAML, once or each time it changes (``--watch``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import yaml

from controller.drivers import load_drivers
from controller.drivers.contract import DriverSet
from controller.status.text import render_text
from controller.status.view import ReceiverRef, StatusView, build_view
from controller.store.base import CATTLE_PROBLEM_META, StoreUnavailable
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


Output = Literal["text", "json", "yaml"]


def snapshot_view(snapshot: Snapshot, drivers: DriverSet, now: float) -> StatusView:
    """The status view of a store read from outside the service: its receivers are the stored tokens
    (the service keeps one per live receiver), its problems the manifest problems it recorded, and
    Cattle's problem the one it last noted."""
    return build_view(
        receivers=[ReceiverRef(t.receiver, t.driver, t.target_id) for t in snapshot.tokens],
        status=snapshot.status,
        drivers=drivers,
        problems=[str(p) for p in snapshot.problems],
        cattle_label=snapshot.meta.get("cattle", "unknown (the service has not started yet)"),
        cattle_problem=snapshot.meta.get(CATTLE_PROBLEM_META) or None,
        now=now,
    )


def read_view(state_dir: Path, drivers: DriverSet, now: float) -> StatusView:
    return snapshot_view(read_snapshot(state_dir / DB_NAME), drivers, now)


def render(view: StatusView, output: Output, *, one_line: bool = False) -> str:
    """``view`` as ``output``; ``one_line`` JSON is one document per line (what ``--watch`` prints)."""
    if output == "json":
        return json.dumps(view, separators=(",", ":")) if one_line else json.dumps(view, indent=2)
    if output == "yaml":
        return "---\n" + yaml.safe_dump(view, sort_keys=False).rstrip("\n")
    return render_text(view)


def render_status(state_dir: Path, output: Output = "text", *, now: float | None = None) -> str:
    return render(read_view(state_dir, load_drivers(), time.time() if now is None else now), output)


def watch(
    view: Callable[[], StatusView],
    output: Output,
    write: Callable[[str], None],
    *,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Render ``view()`` every ``interval`` seconds, writing it each time it changed (the time it was
    read aside), until interrupted (Ctrl-C raises ``KeyboardInterrupt`` out of here)."""
    shown: dict[str, object] | None = None
    while True:
        current = view()
        compared = {k: v for k, v in current.items() if k != "generated_at"}
        if compared != shown:
            write(render(current, output, one_line=True))
            shown = compared
        sleep(interval)
