"""A property-based fuzz of the trigger endpoint, as the listener's runner serves it.

Random methods, headers (Content-Encoding, Content-Type, Authorization, Idempotency-Key, webhook-id,
repeated or not), bodies (raw, JSON, Alertmanager-ish, compressed well or badly) and a valid token
sometimes, against tests/test_listener.py's harness served by ``listener_runner`` (the
``served`` fixture of tests/test_listener_hostile.py). Two properties, over every example so far:
no answer is a 5xx, and the hits answered ``accepted`` are exactly the intents in the store — what
the service would scale by.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from controller.listener import TRIGGER_PATH
from tests.test_listener import ALERTMANAGERISH, JSON, Harness, fixture_body
from tests.test_listener import harness as harness  # the fixture ``served`` builds on
from tests.test_listener_hostile import raw_deflate
from tests.test_listener_hostile import served as served  # a fixture

METHODS = st.sampled_from(["POST"] * 8 + ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
CODINGS = (
    st.sampled_from(
        ["gzip", "x-gzip", "deflate", "identity", "br", "zstd", "compress", "gzip, gzip", "GZIP", " deflate "]
    )
    | PRINTABLE
)
CONTENT_TYPES = (
    st.sampled_from(["application/json", "application/alert+json", "text/plain", "application/octet-stream"])
    | PRINTABLE
)
PLAIN_BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | ALERTMANAGERISH.map(lambda v: json.dumps(v).encode())
    | st.sampled_from(["firing", "resolved"]).map(lambda name: json.dumps(fixture_body(name)).encode())
)
Encoder = Callable[[bytes], bytes]
ENCODERS: st.SearchStrategy[tuple[str, Encoder]] = st.sampled_from(
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip", lambda data: gzip.compress(data)[:-3]),  # cut short
        ("deflate", lambda data: b"\x78" + data),  # a zlib header and then anything
    ]
)
KEYS = st.sampled_from(["k1", "k2", "k3"]) | PRINTABLE


@st.composite
def requests(draw: st.DrawFn, token: str) -> tuple[str, dict[str, str], CIMultiDict[str], bytes]:
    """(method, query, headers, body) of one hit."""
    valid = draw(st.sampled_from([True, True, True, False]))
    secret = token if valid else draw(st.sampled_from(["eyJhbGciOiJub25lIn0.e30.", "not-a-jwt", token[:-2]]))
    headers: CIMultiDict[str] = CIMultiDict()
    query: dict[str, str] = {}
    where = draw(st.sampled_from(["key", "key", "token", "bearer", "bearer", "bearer twice", "nowhere"]))
    if where in ("key", "token"):
        query[where] = secret
    elif where.startswith("bearer"):
        headers.add("Authorization", f"Bearer {secret}")
        if where == "bearer twice":
            headers.add("Authorization", f"Bearer {draw(st.sampled_from([secret, 'other']))}")
    if draw(st.booleans()):
        query["projectId"] = draw(st.sampled_from(["1a5", "1a5", "1a9"]))
    for name in ("Idempotency-Key", "webhook-id"):
        for _ in range(draw(st.integers(0, 2))):
            headers.add(name, draw(KEYS))
    if draw(st.booleans()):
        headers.add("Content-Type", draw(CONTENT_TYPES))
    body = draw(PLAIN_BODIES)
    encoding = draw(st.sampled_from(["none", "encoded", "declared only"]))
    if encoding == "encoded":
        coding, encode = draw(ENCODERS)
        headers.add("Content-Encoding", coding)
        body = encode(body)
    elif encoding == "declared only":
        headers.add("Content-Encoding", draw(CODINGS))
    return draw(METHODS), query, headers, body


@pytest.fixture
def answers() -> Counter[str]:
    """Outcomes answered so far; like ``served``, one for all the examples of a test."""
    return Counter()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_no_request_gets_a_5xx_and_every_accepted_hit_is_one_intent(
    served: Harness,
    answers: Counter[str],
    data: st.DataObject,
) -> None:
    method, query, headers, body = data.draw(requests(served.token))
    response = await served.client.request(method, TRIGGER_PATH, params=query, headers=headers, data=body)
    text = await response.text()
    assert response.status < 500, text
    event(f"answered {response.status}")  # --hypothesis-show-statistics shows the spread
    if response.status == 200 and json.loads(text)["outcome"] == "accepted":
        answers["accepted"] += 1
    assert len(await served.store.pending_intents(served.target_id)) == answers["accepted"]
