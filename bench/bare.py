"""The yardstick: a bare aiohttp server, the same aiohttp as the service, no store, no middleware.

It answers the trigger path with a small JSON body, as the service does, after reading the request's
body; ``/healthz`` tells that it is up. Run as its own process (``python -c BARE_SERVER PORT``) so it
can be pinned to a core like the service.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.processes import Process, free_port

BARE_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"outcome": "accepted"})
app = web.Application()
app.router.add_post("/v1-webhooks/endpoint", ok)
app.router.add_get("/healthz", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


class BareServer(Process):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        super().__init__(
            "bare-aiohttp", [sys.executable, "-c", BARE_SERVER, str(self.port)], tmp / "bare.log"
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self) -> BareServer:
        self.start()
        self.wait_http(f"{self.base}/healthz")
        return self
