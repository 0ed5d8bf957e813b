"""An emulated Cattle API (what the scaleService and scaleHost drivers use), for ``make run``, tests, demos.

Everything it answers carries ``X-Sandbox: true`` and it logs a SANDBOX banner when it starts, so it
is never mistaken for Rancher. ``state`` holds the live state, ``app`` the HTTP edge, ``seed`` the
YAML world. The package re-exports nothing, so importing the seed's error (as the CLI does) loads no
HTTP server.
"""
