"""What the status view tests share: a store's status made by hand, and the elements of a page's DOM.

The status holds one target of each kind the view rules tell apart: a scale that went 1 -> 2 -> 3
through a Cattle error and back; a serviceUpgrade rolling out an image; a target whose receivers are
gone with nothing pending (left out), one gone with an intent still pending (kept); and a target
nothing was ever asked of.
"""

from __future__ import annotations

from html.parser import HTMLParser

from controller.drivers import load_drivers
from controller.status.view import ReceiverRef, StatusView, build_view
from controller.store.base import HitRecord, StoreStatus, TargetPoint, TargetState

T0 = 1_800_000_000.0
NOW = T0 + 60
SCALE = "scaleService:1a5/1s7"
UPGRADE = "serviceUpgrade:1a5/app=web"
GONE = "scaleService:1a5/1s9"
GONE_PENDING = "scaleService:1a5/1s8"
IDLE = "scaleService:1a5/1s6"
ERROR = "Unavailable: cannot reach Cattle"
HOSTILE = 'default/<script>alert("x")</script>'

RECEIVERS = [
    ReceiverRef("default/web-up", "scaleService", SCALE),
    ReceiverRef("default/deploy", "serviceUpgrade", UPGRADE),
    ReceiverRef(HOSTILE, "scaleService", IDLE),
]


def hit(
    hit_id: str, at: float, target: str, receiver: str = "default/web-up", outcome: str = "accepted"
) -> HitRecord:
    return HitRecord(
        hit_id=hit_id,
        receiver=receiver,
        outcome=outcome,  # type: ignore[arg-type]
        received_at=at,
        reason=None if outcome == "accepted" else "cooling down",
        intent_state="folded" if outcome == "accepted" else None,
        before=None,
        after=None,
        clamped=None,
        target_id=target,
    )


def store_status() -> StoreStatus:
    hits = [  # newest first, as the store gives them
        hit("h4", T0 + 21, UPGRADE, receiver="default/deploy"),
        hit("h3", T0 + 20, SCALE, outcome="cooldown"),
        hit("h2", T0 + 10, SCALE),
        hit("h1", T0, SCALE),
    ]
    return StoreStatus(
        targets=[
            TargetState(SCALE, desired=3, observed=3, converged=True, last_error=None, updated_at=T0 + 40),
            TargetState(UPGRADE, desired=2, observed=2, converged=True, last_error=None, updated_at=T0 + 30),
            TargetState(GONE, desired=5, observed=5, converged=True, last_error=None, updated_at=T0),
            TargetState(GONE_PENDING, desired=4, observed=4, converged=True, last_error=None, updated_at=T0),
            TargetState(IDLE, desired=None, observed=1, converged=True, last_error=None, updated_at=T0),
        ],
        pending={GONE_PENDING: 1},
        last_hits={"default/web-up": hits[1], "default/deploy": hits[0]},
        recent_hits=hits,
        history={
            SCALE: [
                TargetPoint(T0 + 0.5, desired=2, observed=1, converged=False, error=None),
                TargetPoint(T0 + 1, desired=2, observed=2, converged=True, error=None),
                TargetPoint(T0 + 10.5, desired=3, observed=2, converged=False, error=ERROR),
                TargetPoint(T0 + 40, desired=3, observed=3, converged=True, error=None),
            ],
            UPGRADE: [TargetPoint(T0 + 30, desired=2, observed=2, converged=True, error=None)],
        },
        latest_intents={UPGRADE: {"image": "registry.example/web:1.2", "tag": "1.2"}},
    )


def sample_view(
    status: StoreStatus | None = None, cattle_label: str = "http://rancher:8080/v2-beta"
) -> StatusView:
    return build_view(
        receivers=RECEIVERS,
        status=store_status() if status is None else status,
        drivers=load_drivers(),
        problems=[],
        cattle_label=cattle_label,
        cattle_problem=None,
        now=NOW,
    )


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text = tag, attrs, ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Dom(HTMLParser):
    """Every element of a page with its attributes and its own text, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "br", "img", "link", "input"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def find(self, tag: str, css: str | None = None, **data: str) -> list[Element]:
        """Elements of ``tag`` with class ``css`` whose ``data-*`` attributes have the given values."""
        return [
            e
            for e in self.elements
            if e.tag == tag
            and (css is None or css in e.classes)
            and all(e.attrs.get(f"data-{k.replace('_', '-')}") == v for k, v in data.items())
        ]

    def within(self, target: str) -> Dom:
        """The elements of one target's section (the chart included)."""
        inner = Dom("")
        inside = False
        for e in self.elements:
            if e.tag == "section":
                inside = e.attrs.get("data-target") == target
            if inside:
                inner.elements.append(e)
        return inner
