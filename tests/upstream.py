"""One upstream for forwardPost tests: an aiohttp app behind the sandbox's service proxy.

``POST /status/{code}`` answers that status with a text body; ``/slow`` answers after ``SLOW`` seconds;
``/big`` answers ``BIG`` bytes; anything else answers 200 with what arrived (method, path, query
pairs, Content-Type, body) as JSON, so a test sees exactly what was forwarded.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

SLOW = 2.0
BIG = 4096


async def _answer(request: web.Request) -> web.Response:
    path = request.match_info["path"]
    if path.startswith("status/"):
        code = int(path.removeprefix("status/"))
        return web.Response(status=code, text=f"upstream says {code}", content_type="text/plain")
    if path == "slow":
        await asyncio.sleep(SLOW)
    if path == "big":
        return web.Response(body=b"x" * BIG, content_type="application/octet-stream")
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
