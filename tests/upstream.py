"""One upstream for forwardPost tests, an aiohttp app behind the sandbox's service proxy, and a GitHub
push to send it.

``POST /status/{code}`` answers that status with a text body; ``/slow`` answers after ``SLOW`` seconds;
``/big`` answers ``BIG`` bytes; ``/headers`` answers the headers that arrived, as [name, value] pairs;
anything else answers 200 with what arrived (method, path, query pairs, Content-Type, body) as JSON, so
a test sees exactly what was forwarded.

``github_push`` is a push as GitHub sends it: the body in tests/fixtures/github/push.json and the
headers GitHub documents for a webhook delivery, signed for real with ``SECRET`` (``X-Hub-Signature``
with SHA-1, ``X-Hub-Signature-256``), since the Rancher Pipeline checks the signature of what arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

from aiohttp import web

SLOW = 2.0
BIG = 4096
GITHUB_PUSH = Path(__file__).parent / "fixtures" / "github" / "push.json"
SECRET = b"pipeline-webhook-secret"


async def _answer(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    if path.startswith("status/"):
        code = int(path.removeprefix("status/"))
        return web.Response(status=code, text=f"upstream says {code}", content_type="text/plain")
    if path == "slow":
        await asyncio.sleep(SLOW)
    if path == "big":
        return web.Response(body=b"x" * BIG, content_type="application/octet-stream")
    if path == "headers":
        return web.json_response([[name, value] for name, value in request.headers.items()])
    seen = {
        "upstream": True,
        "path": request.path,
        "query": [[k, v] for k, v in request.query.items()],
        "contentType": request.headers.get("Content-Type", ""),
        "body": (await request.read()).decode(),
    }
    return web.json_response(seen)


def upstream_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{path:.*}", _answer)
    return app


def github_push() -> tuple[dict[str, str], bytes]:
    """A GitHub push delivery: its headers (Host and Content-Length are the HTTP client's) and body."""
    body = GITHUB_PUSH.read_bytes()
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Event": "push",
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "186853002",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-Hub-Signature": "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    }
    return headers, body
