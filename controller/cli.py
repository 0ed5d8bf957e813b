"""The ``webhook-service`` command: argparse only, every flag also read from an environment variable.

This module turns flags into a ``Settings`` (or a few paths for the read-only commands) and calls
into the package; it holds no logic of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from controller.kube.errors import KubeError
from controller.sandbox.seed import SeedError
from controller.settings import SANDBOX, Settings
from controller.statedir import secure_state_dir
from controller.store.base import StoreError
from controller.store.sqlite import MIN_RETENTION

if TYPE_CHECKING:
    from controller.sandbox.app import SandboxOptions
    from controller.sandbox.seed import SandboxSeed

logger = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def add_flag(
    parser: argparse.ArgumentParser, flag: str, env: str, default: str | None, help: str, **kwargs: object
) -> None:
    parser.add_argument(flag, default=os.environ.get(env, default), help=f"{help} (env {env})", **kwargs)  # type: ignore[arg-type]


def add_service_flags(
    parser: argparse.ArgumentParser, *, cattle_default: str, cattle_help: str, resync_help: str
) -> None:
    """The flags ``run`` and ``operator`` share: the listener and the default Cattle (``shared_settings``)."""
    add_flag(parser, "--listen", "WEBHOOK_LISTEN", "0.0.0.0:8085", "HOST:PORT to listen on")
    add_flag(
        parser, "--public-url", "WEBHOOK_PUBLIC_URL", "", "base of trigger URLs, as Alertmanager reaches it"
    )
    add_flag(parser, "--cattle-url", "CATTLE_URL", cattle_default, cattle_help)
    add_flag(parser, "--sandbox-seed", "WEBHOOK_SANDBOX_SEED", None, "seed YAML of the embedded sandbox")
    add_flag(parser, "--max-body-bytes", "WEBHOOK_MAX_BODY_BYTES", str(1024 * 1024), "largest accepted body")
    add_flag(parser, "--resync-interval", "WEBHOOK_RESYNC_INTERVAL", "30", resync_help)
    add_flag(parser, "--keepalive-timeout", "WEBHOOK_KEEPALIVE_TIMEOUT", "5", "seconds a connection may idle")
    add_flag(parser, "--header-timeout", "WEBHOOK_HEADER_TIMEOUT", "10", "seconds to receive a request head")
    add_flag(parser, "--body-timeout", "WEBHOOK_BODY_TIMEOUT", "30", "seconds to receive a body (else 408)")
    add_flag(parser, "--max-connections", "WEBHOOK_MAX_CONNECTIONS", "1000", "open connections at most")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-service",
        description="Turns webhook hits (Alertmanager, curl) into scaling actions on Rancher's Cattle API.",
    )
    add_flag(parser, "--log-level", "WEBHOOK_LOG_LEVEL", "INFO", "logging level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (listener + reconcile loop) in standalone mode")
    add_flag(run, "--receivers", "WEBHOOK_RECEIVERS", "./receivers", "folder of receiver manifests (watched)")
    add_flag(
        run, "--state", "WEBHOOK_STATE", "./.webhook-state", "state folder: SQLite store and signing keys"
    )
    add_service_flags(
        run,
        cattle_default=SANDBOX,
        cattle_help="Cattle API base, e.g. http://rancher:8080/v2-beta; 'sandbox' embeds the sandbox",
        resync_help="seconds between full reconcile passes",
    )
    add_flag(
        run,
        "--hit-retention-days",
        "WEBHOOK_HIT_RETENTION_DAYS",
        "7",
        "days of hit history kept, fractions allowed (at least 60 s; under 1 day the idempotency window"
        " shrinks to match)",
    )
    run.add_argument("--print-urls", action="store_true", help="print trigger URLs and a curl line on start")

    op = sub.add_parser(
        "operator",
        help="run on Kubernetes: the kopf operator for Receivers plus the listener, in one process",
    )
    add_flag(
        op, "--namespace", "WEBHOOK_NAMESPACE", "webhook-service", "the operator's namespace (ledgers, keys)"
    )
    add_service_flags(
        op,
        # No default Cattle: a forgotten CATTLE_URL must not send hits to an emulation.
        cattle_default="",
        cattle_help="default Cattle API base (none if empty); 'sandbox' embeds the sandbox",
        resync_help="seconds between resyncs of a receiver",
    )
    add_flag(
        op, "--peering", "WEBHOOK_PEERING", "webhook-service", "ClusterKopfPeering name shared by replicas"
    )
    add_flag(op, "--identity", "WEBHOOK_POD_NAME", "", "this replica's name among its peers")

    validate = sub.add_parser("validate", help="check receiver manifests; exit 1 with one line per problem")
    validate.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")

    trigger = sub.add_parser("trigger-url", help="print a receiver's current trigger URL")
    trigger.add_argument("name")
    trigger.add_argument("-n", "--namespace", default="default")
    add_flag(trigger, "--state", "WEBHOOK_STATE", "./.webhook-state", "state folder of the service")
    add_flag(
        trigger, "--public-url", "WEBHOOK_PUBLIC_URL", "", "base URL (default: the one the service uses)"
    )

    status = sub.add_parser("status", help="show receivers and targets")
    add_flag(status, "--state", "WEBHOOK_STATE", "./.webhook-state", "state folder of the service")

    keys = sub.add_parser("keys", help="manage signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, text in (("rotate", "add a new signing key (newest signs)"), ("list", "list key ids")):
        p = keys_sub.add_parser(name, help=text)
        add_flag(p, "--state", "WEBHOOK_STATE", "./.webhook-state", "state folder of the service")
        p.add_argument(
            "--kubernetes",
            action="store_true",
            help="the keys Secret of the operator (credentials as kubectl finds them) instead of --state",
        )
        add_flag(p, "--namespace", "WEBHOOK_NAMESPACE", "webhook-service", "the operator's namespace")

    sandbox = sub.add_parser("cattle-sandbox", help="run the Cattle API sandbox (an emulation, not Rancher)")
    add_flag(sandbox, "--listen", "SANDBOX_LISTEN", "127.0.0.1:8080", "HOST:PORT to listen on")
    add_flag(sandbox, "--seed", "SANDBOX_SEED", None, "seed YAML (projects and services)", required=False)
    add_flag(sandbox, "--access-key", "CATTLE_ACCESS_KEY", None, "require this access key (basic auth user)")
    add_flag(
        sandbox, "--secret-key", "CATTLE_SECRET_KEY", None, "require this secret key (basic auth password)"
    )
    add_flag(sandbox, "--latency-ms", "SANDBOX_LATENCY_MS", "0", "delay added to every answer")
    add_flag(sandbox, "--fail-rate", "SANDBOX_FAIL_RATE", "0", "share of requests answered 503")
    add_flag(
        sandbox, "--transition-ms", "SANDBOX_TRANSITION_MS", "100", "how long an update stays updating-active"
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return replace(
        shared_settings(args),
        receivers_dir=Path(args.receivers),
        state_dir=Path(args.state),
        hit_retention_days=parse_retention_days(args.hit_retention_days),
    )


def parse_retention_days(text: str) -> float:
    """Days, fractions allowed down to the store's minimum of 60 s (0.0007 days), for tests and soaks."""
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days * 86400 >= MIN_RETENTION):
        least = math.ceil(MIN_RETENTION / 86400 * 1e4) / 1e4
        raise argparse.ArgumentTypeError(
            f"--hit-retention-days must be a number of days, at least {least:g} ({MIN_RETENTION:g} s);"
            f" got {text!r}"
        )
    return days


def shared_settings(args: argparse.Namespace) -> Settings:
    """The settings ``run`` and ``operator`` have in common: the listener and the default Cattle."""
    host, port = parse_listen(args.listen)
    return Settings(
        listen_host=host,
        listen_port=port,
        public_url=args.public_url or "",
        cattle_url=args.cattle_url,
        cattle_access_key=os.environ.get("CATTLE_ACCESS_KEY") or None,
        cattle_secret_key=os.environ.get("CATTLE_SECRET_KEY") or None,
        sandbox_seed=Path(args.sandbox_seed) if args.sandbox_seed else None,
        max_body_bytes=int(args.max_body_bytes),
        resync_interval=float(args.resync_interval),
        log_level=args.log_level,
        keepalive_timeout=float(args.keepalive_timeout),
        header_timeout=float(args.header_timeout),
        body_timeout=float(args.body_timeout),
        max_connections=int(args.max_connections),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from controller.service import run_service

    settings = settings_from(args)
    logger.info("settings: %s", ", ".join(f"{k}={v}" for k, v in settings.describe().items()))
    asyncio.run(run_service(settings, print_urls=args.print_urls))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from controller.drivers import load_drivers
    from controller.receivers.loader import load_paths

    receivers, problems = load_paths(args.paths, load_drivers())
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in receiver manifests", file=sys.stderr)
        return 1
    print(f"{len(receivers)} receiver(s) valid")
    return 0


def cmd_trigger_url(args: argparse.Namespace) -> int:
    from controller.status import trigger_url_from_state

    url = trigger_url_from_state(Path(args.state), args.namespace, args.name, args.public_url or None)
    if url is None:
        print(f"no receiver {args.namespace}/{args.name} in {args.state}", file=sys.stderr)
        return 1
    print(url)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from controller.status import render_status

    print(render_status(Path(args.state)))
    return 0


def operator_settings_from(args: argparse.Namespace) -> Settings:
    return replace(
        shared_settings(args), namespace=args.namespace, peering_name=args.peering, identity=args.identity
    )


def cmd_operator(args: argparse.Namespace) -> int:
    from controller.operator.app import run_operator

    settings = operator_settings_from(args)
    logger.info("settings: %s", ", ".join(f"{k}={v}" for k, v in settings.describe().items()))
    asyncio.run(run_operator(settings))
    return 0


async def kube_keys(command: str, namespace: str) -> list[str]:
    from controller.kube.client import KubeClient
    from controller.operator.app import discover_connection
    from controller.operator.keys import add_key, load_or_create_keyring

    client = KubeClient.from_connection(discover_connection())
    try:
        if command == "rotate":
            return [await add_key(client, namespace)]
        return (await load_or_create_keyring(client, namespace)).kids
    finally:
        await client.close()


def cmd_keys(args: argparse.Namespace) -> int:
    from controller.tokens import KeyRing

    if args.kubernetes:
        for kid in asyncio.run(kube_keys(args.keys_command, args.namespace)):
            print(kid)
        return 0
    keys_dir = Path(args.state) / "keys"
    if args.keys_command == "rotate":
        secure_state_dir(Path(args.state))  # it may create the folder: 0700 like ``run`` makes it
        print(KeyRing.create_key(keys_dir))
        return 0
    for kid in KeyRing.load(keys_dir).kids:
        print(kid)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from controller.sandbox.app import SandboxOptions
    from controller.sandbox.seed import load_seed

    host, port = parse_listen(args.listen)
    options = SandboxOptions(
        access_key=args.access_key,
        secret_key=args.secret_key,
        latency_ms=int(args.latency_ms),
        fail_rate=float(args.fail_rate),
        transition_ms=int(args.transition_ms),
    )
    seed = load_seed(Path(args.seed)) if args.seed else None  # None: the default world
    asyncio.run(serve_sandbox(host, port, seed, options))
    return 0


async def serve_sandbox(host: str, port: int, seed: SandboxSeed | None, options: SandboxOptions) -> None:
    from controller.sandbox.app import run_sandbox

    runner = await run_sandbox(host, port, seed, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


COMMANDS: Mapping[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "operator": cmd_operator,
    "validate": cmd_validate,
    "trigger-url": cmd_trigger_url,
    "status": cmd_status,
    "keys": cmd_keys,
    "cattle-sandbox": cmd_sandbox,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (argparse.ArgumentTypeError, SeedError, StoreError, KubeError, OSError) as e:
        # A person's mistake (a bad flag, seed file or state folder): one line, no traceback.
        print(f"webhook-service {args.command}: {e}", file=sys.stderr)
        return 2
