"""All settings of one run, in one frozen dataclass built once by ``cli`` from flags and environment.

Nothing else reads the environment. ``describe()`` is what gets logged at start, secrets masked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

SANDBOX = "sandbox"
SECRET_FIELDS = frozenset({"cattle_secret_key"})


@dataclass(frozen=True)
class Settings:
    receivers_dir: Path = Path("receivers")
    state_dir: Path = Path(".webhook-state")
    listen_host: str = "0.0.0.0"
    listen_port: int = 8085
    public_url: str = ""  # base of trigger URLs; empty means http://<listen>
    cattle_url: str = SANDBOX  # a Cattle API base like http://rancher:8080/v2-beta, or "sandbox"
    cattle_access_key: str | None = None
    cattle_secret_key: str | None = None
    sandbox_seed: Path | None = None  # seed for the embedded sandbox (only with cattle_url == "sandbox")
    max_body_bytes: int = 1024 * 1024
    watch_interval: float = 0.5  # seconds between scans of the receivers folder
    resync_interval: float = 30.0  # seconds between full reconcile passes
    cattle_timeout: float = 10.0  # seconds per Cattle request
    confirm_timeout: float = 60.0  # seconds to wait for Cattle to show the new scale
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    token_cache_size: int = 4096
    hit_retention_days: float = 7.0  # hits older than this are forgotten (a pending one never)
    log_level: str = "INFO"
    # operator mode
    namespace: str = "webhook-service"  # the operator's own: its IntentLedgers and signing keys Secret
    peering_name: str = "webhook-service"  # the ClusterKopfPeering the replicas elect the active one in
    identity: str = ""  # this replica's name among peers (the pod name); empty: host name + random
    key_refresh_interval: float = 30.0  # seconds between re-reads of the signing keys Secret
    # listener connection limits (why these values: controller/listener/server.py)
    keepalive_timeout: float = 5.0  # seconds a connection may wait for its next request's first byte
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its head
    body_timeout: float = 30.0  # seconds to read a whole body; later is 408
    max_connections: int = 1000  # open connections; at the cap a new one replaces an idle one or is closed

    @property
    def uses_sandbox(self) -> bool:
        return self.cattle_url == SANDBOX

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "::", "") else self.listen_host
        return f"http://{host}:{self.listen_port}"

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked (also credentials inside a URL): logged once at start."""
        from controller.redact import mask_url

        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                out[f.name] = "****"
            else:
                out[f.name] = mask_url(str(value))
        return out
