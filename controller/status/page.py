"""The status page: a ``StatusView`` as one self-contained HTML document with an inline SVG chart per target.

Server-rendered, with no script and nothing fetched from elsewhere, so it works behind any proxy and
from a cluster without internet; a ``<meta http-equiv="refresh">`` keeps it current. Every value is
escaped where it is written (receiver names come from files anyone with write access to the folder
controls). The chart's marks carry their values as ``data-*`` attributes, so what the page says can
be checked from its DOM without reading pixels:

- ``section.target`` — a target (``data-target``, ``data-kind``, ``data-desired``, ``data-observed``,
  ``data-converged``, ``data-state``), holding its facts and its chart;
- ``circle.point`` — a change of the target (``data-at``, ``data-desired``, ``data-observed``,
  ``data-converged``, ``data-error``), on step lines of desired (solid) and observed (dashed);
- ``rect.band`` — a period the target was not converged (class ``error`` too when it was in error),
  from ``data-from`` to ``data-to``;
- ``line.hit`` — an accepted hit (``data-hit``, ``data-at``, ``data-receiver``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape

from controller.status.view import HitView, PointView, StatusView, TargetView, epoch, iso

XFn = Callable[[str], float]  # a time to its x
YFn = Callable[[int | None], float]  # a value to its y

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 22
REFRESH_SECONDS = 10


def swatch(mark: str) -> str:
    return f'<svg width="24" height="12" viewBox="0 0 24 12" xmlns="http://www.w3.org/2000/svg">{mark}</svg>'


LEGEND = (
    '<p class="legend">'
    + swatch('<path class="desired" d="M0,6H24"></path>')
    + " desired "
    + swatch('<path class="observed" d="M0,6H24"></path>')
    + " observed "
    + swatch('<rect class="band" width="24" height="12"></rect>')
    + " not converged "
    + swatch('<rect class="band error" width="24" height="12"></rect>')
    + " in error "
    + swatch('<line class="hit" x1="12" x2="12" y1="0" y2="12"></line>')
    + " accepted hit</p>"
)

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}
.bad{color:#b00020}.ok{color:#1b7f3b}
section.target{margin:1em 0 2em}
svg.chart{background:#fafafa;border:1px solid #ddd}
.desired{fill:none;stroke:#1f5fbf;stroke-width:2}
.observed{fill:none;stroke:#2a9d55;stroke-width:2;stroke-dasharray:5 3}
.point{fill:#1f5fbf}
.band{fill:#f0b429;opacity:.25}.band.error{fill:#d64545;opacity:.3}
.hit{stroke:#7a3fbf;stroke-width:1.5}
.axis{font-size:11px;fill:#555}
"""


def render_page(view: StatusView) -> str:
    cattle = view["cattle"]
    cattle_line = f"Cattle: {e(cattle['label'])}" + (
        f' — <span class="bad">{e(cattle["problem"])}</span>' if cattle["problem"] else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        "<title>webhook-service status</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>webhook-service</h1>",
        f'<p class="cattle">{cattle_line}</p>',
        f"<p>As of {e(view['generated_at'])}</p>",
    ]
    if view["problems"]:
        items = "".join(f"<li>{e(p)}</li>" for p in view["problems"])
        parts.append(f'<h2>Problems</h2><ul class="problems bad">{items}</ul>')
    parts += ["<h2>Receivers</h2>", receivers_table(view)]
    parts += ["<h2>Targets</h2>", LEGEND]
    parts += [target_section(t, view["generated_at"]) for t in view["targets"]] or ["<p>(none)</p>"]
    parts += ["<h2>Recent hits</h2>", hits_table(view["recent_hits"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def table(css: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return "<p>(none)</p>"
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def receivers_table(view: StatusView) -> str:
    rows = [
        [r["name"], r["driver"], r["target"], r["last_hit_at"] or "-", r["last_outcome"] or "-"]
        for r in view["receivers"]
    ]
    return table("receivers", ["Receiver", "Driver", "Target", "Last hit", "Outcome"], rows)


def hits_table(hits: Sequence[HitView]) -> str:
    rows = [[h["at"], h["receiver"], h["target"], h["outcome"], h["reason"] or ""] for h in hits]
    return table("hits", ["Time", "Receiver", "Target", "Outcome", "Reason"], rows)


def target_section(target: TargetView, now: str) -> str:
    state_class = "ok" if target["converged"] else "bad" if target["state"] == "error" else ""
    rows: list[tuple[str, object]] = [
        ("Does", target["does"]),
        ("Pending", target["pending"]),
        ("Last change", target["last_change"] or "-"),
    ]
    if target["kind"] == "scale":
        rows[1:1] = [("Desired", dash(target["desired"])), ("Observed", dash(target["observed"]))]
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    state = f'<tr><th>State</th><td class="state {state_class}">{e(target["state"])}</td></tr>'
    error = (
        f'<tr><th>Last error</th><td class="error bad">{e(target["last_error"])}</td></tr>'
        if target["last_error"]
        else ""
    )
    return (
        f'<section class="target" data-target="{e(target["id"])}" data-kind="{e(target["kind"])}" '
        f'data-desired="{e(target["desired"])}" data-observed="{e(target["observed"])}" '
        f'data-converged="{str(target["converged"]).lower()}" data-state="{e(target["state"])}">'
        f"<h3>{e(target['id'])}</h3><table>{facts}{state}{error}</table>{chart(target, now)}</section>"
    )


def chart(target: TargetView, now: str) -> str:
    points, hits = target["history"], [h for h in target["hits"] if h["outcome"] == "accepted"]
    end = epoch(now)
    times = [epoch(p["at"]) for p in points] + [epoch(h["at"]) for h in hits]
    start = min(times) if times else end - 60  # the chart spans what happened, up to now
    span = max(end - start, 1.0)
    scale = target["kind"] == "scale"
    top = max([v for p in points for v in (p["desired"], p["observed"]) if v is not None] + [1])

    def x(at: str) -> float:
        return round(LEFT + (epoch(at) - start) / span * (WIDTH - LEFT - RIGHT), 1)

    def y(value: int | None) -> float:
        return round(TOP + (1 - (value or 0) / top) * (HEIGHT - TOP - BOTTOM), 1)

    marks = [bands(points, now, x)]
    if scale:
        marks += [step_line(points, now, "desired", x, y), step_line(points, now, "observed", x, y)]
    for p in points:
        value = p["desired"] if p["desired"] is not None else p["observed"]
        marks.append(
            f'<circle class="point" r="3" cx="{x(p["at"])}" cy="{y(value)}" data-at="{e(p["at"])}" '
            f'data-desired="{e(p["desired"])}" data-observed="{e(p["observed"])}" '
            f'data-converged="{str(p["converged"]).lower()}" data-error="{e(p["error"])}">'
            f"<title>{e(point_title(p))}</title></circle>"
        )
    for h in hits:
        marks.append(
            f'<line class="hit" x1="{x(h["at"])}" x2="{x(h["at"])}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
            f'data-hit="{e(h["hit_id"])}" data-at="{e(h["at"])}" data-receiver="{e(h["receiver"])}">'
            f"<title>{e(h['at'])} {e(h['receiver'])}</title></line>"
        )
    base, high, low = HEIGHT - BOTTOM + 15, top if scale else "", 0 if scale else ""
    marks += [
        f'<text class="axis" x="{LEFT - 5}" y="{TOP + 10}" text-anchor="end">{high}</text>',
        f'<text class="axis" x="{LEFT - 5}" y="{HEIGHT - BOTTOM}" text-anchor="end">{low}</text>',
        f'<text class="axis" x="{LEFT}" y="{base}">{e(iso(start))}</text>',
        f'<text class="axis" x="{WIDTH - RIGHT}" y="{base}" text-anchor="end">{e(now)}</text>',
    ]
    label = f"{target['id']}: desired and observed over time" if scale else f"{target['id']} over time"
    return (
        f'<svg class="chart" role="img" aria-label="{e(label)}" data-target="{e(target["id"])}" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(marks)}</svg>'
    )


def bands(points: Sequence[PointView], now: str, x: XFn) -> str:
    """A band over each period the target was not converged: from its point to the next one (or now)."""
    out = []
    ends = [q["at"] for q in points[1:]] + [now] if points else []
    for p, until in zip(points, ends, strict=True):
        if p["converged"]:
            continue
        css = "band error" if p["error"] else "band"
        left, right = x(p["at"]), x(until)
        out.append(
            f'<rect class="{css}" x="{left}" y="{TOP}" width="{max(right - left, 1.0):.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}" data-from="{e(p["at"])}" data-to="{e(until)}" '
            f'data-error="{e(p["error"])}"></rect>'
        )
    return "".join(out)


def step_line(points: Sequence[PointView], now: str, series: str, x: XFn, y: YFn) -> str:
    """A value holds until the next change: horizontal, then vertical, segments; a gap where it is unknown."""
    path: list[str] = []
    last: int | None = None
    for p in points:
        value = p["desired"] if series == "desired" else p["observed"]
        if value is None:
            last = None
            continue
        path.append(f"H{x(p['at'])}V{y(value)}" if last is not None else f"M{x(p['at'])},{y(value)}")
        last = value
    if last is not None:
        path.append(f"H{x(now)}")
    return f'<path class="{series}" d="{"".join(path)}"></path>' if path else ""


def point_title(p: PointView) -> str:
    text = f"{p['at']} desired {dash(p['desired'])} observed {dash(p['observed'])}"
    return text + (f" error: {p['error']}" if p["error"] else "" if p["converged"] else " (not converged)")


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)
