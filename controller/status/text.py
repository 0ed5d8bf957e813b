"""The ``status`` tables: a ``StatusView`` as text for a terminal.

The columns are the ones ``status`` always had; a target that is not a scale (serviceUpgrade) has no
desired or observed scale, so its DESIRED and OBSERVED say "-" and DOES says what it rolls out.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.status.view import StatusView


def render_text(view: StatusView) -> str:
    receiver_rows = [
        [
            r["name"],
            r["driver"],
            r["target"].partition(":")[2],
            seconds(r["last_hit_at"]),
            r["last_outcome"] or "-",
        ]
        for r in view["receivers"]
    ]
    target_rows = [
        [
            t["id"],
            dash(t["desired"]),
            dash(t["observed"]),
            str(t["pending"]),
            "yes" if t["converged"] else f"no ({t['state']})",
            t["last_error"] or "-",
            t["does"],
        ]
        for t in view["targets"]
    ]
    cattle = view["cattle"]
    parts = [
        f"Cattle: {cattle['label']}" + (f" ({cattle['problem']})" if cattle["problem"] else ""),
        "",
        "RECEIVERS",
        table(["RECEIVER", "DRIVER", "TARGET", "LAST HIT", "OUTCOME"], receiver_rows),
        "",
        "TARGETS",
        table(["TARGET", "DESIRED", "OBSERVED", "PENDING", "CONVERGED", "LAST ERROR", "DOES"], target_rows),
    ]
    if view["problems"]:
        parts += ["", "PROBLEMS", *(f"  {p}" for p in view["problems"])]
    return "\n".join(parts)


def seconds(at: str | None) -> str:
    """An ISO time as the tables show it: to the second."""
    return "-" if at is None else at[:19] + "Z"


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "  (none)"
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )
