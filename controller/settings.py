"""All settings of one run, in one frozen dataclass built once by ``cli`` from flags and environment.

Nothing else reads the environment. ``describe()`` is what gets logged at start, secrets masked.
A field given on the command line declares its flag, variable, parser and help in its metadata
(``controller.flags``), next to its default, so neither is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from controller import flags
from controller.flags import option
from controller.redact import MASK, mask_url

SANDBOX = "sandbox"
MIN_RETENTION: Final = 60.0  # seconds of hit history, at least: the store prunes no younger hit
SECRET_FIELDS = frozenset({"cattle_secret_key"})


SERVICE: Final = frozenset({"run", "operator"})
STATE: Final = frozenset({"run", "trigger-url", "status", "keys rotate", "keys list"})
IMPORT: Final = "import-rancher"


@dataclass(frozen=True)
class Settings:
    """Fields with ``option(...)`` metadata are given by a flag and/or an environment variable (see
    ``controller.flags``); their default here is the only one. The others are tunables without a flag."""

    receivers_dir: Path = field(
        default=Path("receivers"),
        metadata=option(
            "--receivers",
            "WEBHOOK_RECEIVERS",
            flags.path,
            "folder of receiver manifests (watched; import-rancher: written)",
            commands=frozenset({"run", IMPORT}),
            metavar="DIR",
            show=lambda p: f"./{p}",
        ),
    )
    api_receivers_dir: Path | None = field(  # None: <state>/api-receivers (``api_receivers_path``)
        default=None,
        metadata=option(
            "--api-receivers",
            "WEBHOOK_API_RECEIVERS",
            flags.optional_path,
            "folder of the receivers created through the receivers API (managed by the service, watched)",
            commands=frozenset({"run"}),
            metavar="DIR",
            show=lambda _: "<state>/api-receivers",
        ),
    )
    state_dir: Path = field(
        default=Path(".webhook-state"),
        metadata=option(
            "--state",
            "WEBHOOK_STATE",
            flags.path,
            "state folder of the service: SQLite store and signing keys",
            commands=STATE,
            metavar="DIR",
            show=lambda p: f"./{p}",
        ),
    )
    listen_host: str = field(
        default="0.0.0.0",
        metadata=option(
            "--listen",
            "WEBHOOK_LISTEN",
            flags.listen_address,
            "HOST:PORT to listen on",
            metavar="HOST:PORT",
            into=("listen_host", "listen_port"),
            show=flags.show_listen,
        ),
    )
    listen_port: int = 8085  # given with listen_host by --listen
    metrics_host: str = field(  # "": /metrics is served on the listener's port
        default="",
        metadata=option(
            "--metrics-listen",
            "WEBHOOK_METRICS_LISTEN",
            flags.listen_address,
            "HOST:PORT to serve /metrics on, apart from the trigger endpoint (default: the listener's)",
            commands=SERVICE,
            metavar="HOST:PORT",
            into=("metrics_host", "metrics_port"),
            show=lambda _: "the listener's",
        ),
    )
    metrics_port: int = 0  # given with metrics_host by --metrics-listen
    public_url: str = field(  # base of trigger URLs; empty means http://<listen>
        default="",
        metadata=option(
            "--public-url",
            "WEBHOOK_PUBLIC_URL",
            flags.text,
            "base of trigger URLs, as Alertmanager reaches the service (trigger-url: the service's)",
            commands=SERVICE | {"trigger-url"},
            metavar="URL",
            show=lambda _: "http://<listen>",
        ),
    )
    cattle_url: str = field(  # a Cattle API base like http://rancher:8080/v2-beta, or "sandbox"
        default=SANDBOX,
        metadata=option(
            "--cattle-url",
            "CATTLE_URL",
            flags.text,
            "Cattle API base, e.g. http://rancher:8080/v2-beta; 'sandbox' embeds the sandbox",
            metavar="URL",
            commands=SERVICE | {IMPORT},
            # No default Cattle for the operator: a forgotten CATTLE_URL must not send hits to an emulation,
            # nor an import read an emulation's receivers.
            command_defaults={"operator": "", IMPORT: ""},
        ),
    )
    cattle_access_key: str | None = field(
        default=None,
        metadata=option(
            None,
            "CATTLE_ACCESS_KEY",
            flags.optional_text,
            "Rancher API access key",
            commands=SERVICE | {IMPORT},
        ),
    )
    cattle_secret_key: str | None = field(
        default=None,
        metadata=option(
            None,
            "CATTLE_SECRET_KEY",
            flags.optional_text,
            "Rancher API secret key",
            commands=SERVICE | {IMPORT},
        ),
    )
    sandbox_seed: Path | None = field(  # seed for the embedded sandbox (only with cattle_url == "sandbox")
        default=None,
        metadata=option(
            "--sandbox-seed",
            "WEBHOOK_SANDBOX_SEED",
            flags.optional_path,
            "seed YAML of the embedded sandbox",
            metavar="FILE",
        ),
    )
    rancher_public_key: Path | None = field(  # Cattle's RSA key, for Rancher's oldest ?token= URLs
        default=None,
        metadata=option(
            "--rancher-public-key",
            "WEBHOOK_RANCHER_PUBLIC_KEY",
            flags.optional_path,
            "Cattle's RSA public key (PEM): accept the RS256 ?token= URLs of imported Rancher receivers",
            metavar="FILE",
        ),
    )
    max_body_bytes: int = field(
        default=1024 * 1024,
        metadata=option(
            "--max-body-bytes",
            "WEBHOOK_MAX_BODY_BYTES",
            flags.positive_int,
            "largest accepted body (larger: 413)",
            metavar="N",
        ),
    )
    watch_interval: float = 0.5  # seconds between scans of the receivers folder
    resync_interval: float = field(  # seconds between full reconcile passes
        default=30.0,
        metadata=option(
            "--resync-interval",
            "WEBHOOK_RESYNC_INTERVAL",
            flags.positive_seconds,
            "seconds between full reconcile passes (operator: between resyncs of a receiver)",
            metavar="S",
        ),
    )
    cattle_timeout: float = 10.0  # seconds per Cattle request
    log_summary_interval: float = 60.0  # seconds between the listener's INFO lines counting hits
    confirm_timeout: float = 60.0  # seconds to wait for Cattle to show the new scale
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    token_cache_size: int = 4096
    hit_retention_days: float = field(  # hits older than this are forgotten (a pending one never)
        default=7.0,
        metadata=option(
            "--hit-retention-days",
            "WEBHOOK_HIT_RETENTION_DAYS",
            flags.days_at_least(MIN_RETENTION),
            "days of hit history kept, fractions allowed (at least 60 s; under 1 day the idempotency"
            " window shrinks to match)",
            commands=frozenset({"run"}),
            metavar="D",
        ),
    )
    log_level: str = field(
        default="INFO",
        metadata=option(
            "--log-level",
            "WEBHOOK_LOG_LEVEL",
            flags.log_level,
            "logging level, before or after the command",
            commands=None,
            metavar="|".join(flags.LOG_LEVELS),
        ),
    )
    log_format: str = field(
        default="text",
        metadata=option(
            "--log-format",
            "WEBHOOK_LOG_FORMAT",
            flags.log_format,
            "log lines as text, or one JSON object per line for log shippers; before or after the command",
            commands=None,
            metavar="|".join(flags.LOG_FORMATS),
        ),
    )
    # operator mode
    namespace: str = field(  # the operator's own: its IntentLedgers and signing keys Secret
        default="webhook-service",
        metadata=option(
            "--namespace",
            "WEBHOOK_NAMESPACE",
            flags.text,
            "the operator's namespace (ledgers, keys Secret)",
            commands=frozenset({"operator", "keys rotate", "keys list"}),
            metavar="NS",
        ),
    )
    peering_name: str = field(  # the ClusterKopfPeering the replicas elect the active one in
        default="webhook-service",
        metadata=option(
            "--peering",
            "WEBHOOK_PEERING",
            flags.text,
            "ClusterKopfPeering name shared by replicas",
            commands=frozenset({"operator"}),
            metavar="NAME",
        ),
    )
    identity: str = field(  # this replica's name among peers (the pod name); empty: host name + random
        default="",
        metadata=option(
            "--identity",
            "WEBHOOK_POD_NAME",
            flags.text,
            "this replica's name among its peers (empty: host name + random)",
            commands=frozenset({"operator"}),
            metavar="NAME",
        ),
    )
    leader_lease: float = field(  # the Lease's duration; the renew deadline and retry period scale with it
        default=15.0,
        metadata=option(
            "--leader-lease",
            "WEBHOOK_LEADER_LEASE",
            flags.positive_seconds,
            "seconds a leader's Lease lasts unrenewed: how long folding waits after a hard kill",
            commands=frozenset({"operator"}),
            metavar="S",
        ),
    )
    key_refresh_interval: float = 30.0  # seconds between re-reads of the signing keys Secret
    # listener connection limits (why these values: controller/listener/server.py)
    keepalive_timeout: float = field(  # seconds a connection may wait for its next request's first byte
        default=5.0,
        metadata=option(
            "--keepalive-timeout",
            "WEBHOOK_KEEPALIVE_TIMEOUT",
            flags.positive_seconds,
            "seconds a connection may idle",
            metavar="S",
        ),
    )
    header_timeout: float = field(  # seconds from a request's first byte to the end of its head
        default=10.0,
        metadata=option(
            "--header-timeout",
            "WEBHOOK_HEADER_TIMEOUT",
            flags.positive_seconds,
            "seconds to receive a request head",
            metavar="S",
        ),
    )
    body_timeout: float = field(  # seconds to read a whole body; later is 408
        default=30.0,
        metadata=option(
            "--body-timeout",
            "WEBHOOK_BODY_TIMEOUT",
            flags.positive_seconds,
            "seconds to receive a body (else 408)",
            metavar="S",
        ),
    )
    max_connections: int = field(  # open connections; at the cap a new one replaces an idle one or is closed
        default=1000,
        metadata=option(
            "--max-connections",
            "WEBHOOK_MAX_CONNECTIONS",
            flags.positive_int,
            "open connections at most",
            metavar="N",
        ),
    )

    @property
    def uses_sandbox(self) -> bool:
        return self.cattle_url == SANDBOX

    @property
    def api_receivers_path(self) -> Path:
        return self.api_receivers_dir or self.state_dir / "api-receivers"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "::", "") else self.listen_host
        return f"http://{host}:{self.listen_port}"

    def cattle_problem(self) -> str | None:
        """Why the Cattle settings cannot be right, as one line; None when they may be.

        Checked before anything starts, since each of these would otherwise pass silently: a URL
        without a scheme (``rancher.example:8080``) parses as a scheme and a path, and half a key pair
        makes every request unauthenticated. Whether Cattle answers is for the running service to find.
        """
        if self.uses_sandbox or not self.cattle_url:
            return None
        url = mask_url(self.cattle_url)
        try:
            parts = urlsplit(self.cattle_url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            return f"--cattle-url: expected an http:// or https:// URL with a host, got {url!r}"
        if parts.username is not None and parts.password is None:
            return f"--cattle-url: the URL names an access key without its secret key ({url})"
        if (self.cattle_access_key is None) != (self.cattle_secret_key is None):
            given, missing = (
                ("CATTLE_ACCESS_KEY", "CATTLE_SECRET_KEY")
                if self.cattle_secret_key is None
                else ("CATTLE_SECRET_KEY", "CATTLE_ACCESS_KEY")
            )
            return f"{given} is set but {missing} is not: give both Cattle API keys, or neither"
        return None

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked (also credentials inside a URL): logged once at start."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                out[f.name] = MASK
            else:
                out[f.name] = mask_url(str(value))
        return out
