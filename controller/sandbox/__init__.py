"""An emulated Cattle API (what the scaleService and scaleHost drivers use), for ``make run``, tests, demos.

Everything it answers carries ``X-Sandbox: true`` and it logs a SANDBOX banner when it starts, so it
is never mistaken for Rancher. ``app`` holds the live state and the HTTP edge; ``seed`` the YAML world.
"""

from controller.sandbox.app import SANDBOX_STATE, SandboxOptions, make_sandbox_app, run_sandbox
from controller.sandbox.seed import (
    SandboxSeed,
    SeedError,
    SeedHost,
    SeedProject,
    SeedService,
    load_seed,
    parse_seed,
)
from controller.sandbox.state import SandboxHost, SandboxService, SandboxState

__all__ = [
    "SANDBOX_STATE",
    "SandboxHost",
    "SandboxOptions",
    "SandboxSeed",
    "SandboxService",
    "SandboxState",
    "SeedError",
    "SeedHost",
    "SeedProject",
    "SeedService",
    "load_seed",
    "make_sandbox_app",
    "parse_seed",
    "run_sandbox",
]
