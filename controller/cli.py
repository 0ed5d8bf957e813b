"""The ``webhook-service`` command: argparse only, every flag also read from an environment variable.

This module turns flags into a ``Settings`` and calls into the package; it holds no logic of its own.
The flags of ``run``, ``operator`` and the state commands are not written here: each is declared
once, on its ``Settings`` field (``controller.flags``), and read from there to build both the parser
and the settings, so a default can't differ between the two.

Every mistake a person can make at the command line ends in one line on stderr and exit 2 (argparse's
own refusals too), never a traceback; a closed stdout (``status | head -1``) ends quietly with 141,
as a tool killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from controller import flags
from controller.errors import WebhookServiceError
from controller.flags import OPTION, Option
from controller.kube.errors import KubeError
from controller.logformat import configure_logging
from controller.rancher.keys import RancherKeyError
from controller.sandbox.seed import SeedError
from controller.settings import Settings
from controller.statedir import secure_state_dir
from controller.statelock import StateFolderBusy
from controller.store.base import StoreError

if TYPE_CHECKING:
    from controller.sandbox.app import SandboxOptions
    from controller.sandbox.seed import SandboxSeed

logger = logging.getLogger(__name__)

PROG: Final = "webhook-service"
# The settings' own declarations (``controller.flags``): the fields given on the command line, each once.
DECLARED: Final = tuple((f, f.metadata[OPTION]) for f in fields(Settings) if OPTION in f.metadata)
OPTIONS: Final = {f.name: opt for f, opt in DECLARED}
DEFAULTS: Final[Mapping[str, Any]] = {f.name: f.default for f in fields(Settings)}
# The sandbox's flags fill ``SandboxOptions`` (its own dataclass, not a setting of the service), declared
# here the same way, with their defaults.
SANDBOX_FLAGS: Final[Mapping[str, tuple[Option, Any]]] = {
    "listen": (
        Option(
            "--listen",
            "SANDBOX_LISTEN",
            "HOST:PORT to listen on",
            flags.listen_address,
            show=flags.show_listen,
        ),
        ("127.0.0.1", 8080),
    ),
    "seed": (
        Option("--seed", "SANDBOX_SEED", "seed YAML (projects and services)", flags.optional_path),
        None,
    ),
    "access_key": (
        Option("--access-key", "CATTLE_ACCESS_KEY", "require this access key (basic auth user)", flags.text),
        None,
    ),
    "secret_key": (
        Option(
            "--secret-key", "CATTLE_SECRET_KEY", "require this secret key (basic auth password)", flags.text
        ),
        None,
    ),
    "latency_ms": (
        Option("--latency-ms", "SANDBOX_LATENCY_MS", "delay added to every answer", flags.non_negative_int),
        0,
    ),
    "fail_rate": (
        Option("--fail-rate", "SANDBOX_FAIL_RATE", "share of requests answered 503", flags.share),
        0.0,
    ),
    "transition_ms": (
        Option(
            "--transition-ms",
            "SANDBOX_TRANSITION_MS",
            "how long an update stays updating-active",
            flags.non_negative_int,
        ),
        100,
    ),
}


class UsageError(WebhookServiceError):
    """A command line argparse refuses, as the one line ``main`` prints."""


class CommandError(WebhookServiceError):
    """A person's mistake found by a command (a missing key ring, an ambiguous name): one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a refused command line is one line (``main`` prints it), not usage and an error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def package_version() -> str:
    try:
        return importlib.metadata.version(PROG)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(version unknown: not installed)"


def option_default(field_: Field[Any], opt: Option, command: str) -> Any:
    if command in opt.command_defaults:
        return opt.command_defaults[command]
    if opt.into:
        return tuple(DEFAULTS[name] for name in opt.into)
    return field_.default


def add_option(
    parser: argparse.ArgumentParser, dest: str, opt: Option, default_value: Any, **kwargs: Any
) -> None:
    assert opt.flag is not None
    shown = opt.describe_default(default_value)
    parser.add_argument(
        opt.flag,
        dest=dest,
        metavar=opt.metavar,
        help=f"{opt.help} (env {opt.env}; default {shown})",
        **kwargs,
    )


def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of ``command``, from the ``Settings`` fields that declare one for it.

    argparse keeps them as text with default None ("not given"); ``settings_for`` parses them. A flag
    every command takes (``--log-level``) is also on the main parser, so it goes before or after the
    command; here it defaults to SUPPRESS so that, absent, it doesn't hide the one given before."""
    for field_, opt in DECLARED:
        if opt.flag is None or not opt.takes(command):
            continue
        default = argparse.SUPPRESS if opt.commands is None else None
        add_option(parser, field_.name, opt, option_default(field_, opt, command), default=default)


def leaf(
    sub: argparse._SubParsersAction[Parser], name: str, command: str | None = None, **kwargs: Any
) -> Parser:
    """A command's parser with the settings' flags it takes; ``command_key`` names it ("keys list")."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(command_key=command or name)
    add_setting_flags(parser, command or name)
    return parser


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Turns webhook hits (Alertmanager, curl) into scaling actions on Rancher's Cattle API.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    add_setting_flags(parser, "")  # no command: the flags every command takes (--log-level)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = leaf(sub, "run", help="run the service (listener + reconcile loop) in standalone mode")
    run.add_argument("--print-urls", action="store_true", help="print trigger URLs and a curl line on start")
    leaf(
        sub,
        "operator",
        help="run on Kubernetes: the kopf operator for Receivers plus the listener, in one process",
    )

    validate = leaf(sub, "validate", help="check receiver manifests; exit 1 with one line per problem")
    validate.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    validate.add_argument(
        "--kubernetes",
        action="store_true",
        help="check them as the operator would (signature.secretRef allowed) instead of as run does",
    )

    trigger = leaf(sub, "trigger-url", help="print a receiver's current trigger URL")
    trigger.add_argument("name", metavar="[NS/]NAME")
    trigger.add_argument(
        "-n", "--namespace", dest="receiver_namespace", metavar="NS", help="default: default"
    )

    imports = leaf(
        sub,
        "import-rancher",
        help="write Receiver manifests for Rancher 1.6's webhook receivers; their URLs keep working",
    )
    imports.add_argument(
        "--project",
        dest="projects",
        action="append",
        default=[],
        metavar="ID",
        help="a project (environment) to import, like 1a5; repeatable (default: every project the key sees)",
    )
    imports.add_argument(
        "--kubernetes",
        action="store_true",
        help="print the manifests as one YAML stream for kubectl apply -f - instead of writing files",
    )
    imports.add_argument(
        "-n",
        "--namespace",
        dest="receiver_namespace",
        default="default",
        metavar="NS",
        help="default: default",
    )
    imports.add_argument("--force", action="store_true", help="replace receiver files that differ")

    status = leaf(sub, "status", help="show receivers and targets")
    status.add_argument(
        "-o", "--output", choices=("text", "json", "yaml"), default="text", help="tables (default) or data"
    )
    status.add_argument(
        "--watch", action="store_true", help="print it again each time it changes, until Ctrl-C"
    )
    status.add_argument(
        "--interval",
        type=positive_seconds,
        default=2.0,
        metavar="S",
        help="--watch reads every S seconds (default 2)",
    )
    leaf(sub, "crd", help="print the Receiver CRD for the installed drivers (crds/receivers.yaml)")

    keys = sub.add_parser("keys", help="manage signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=Parser)
    for name, text in (("rotate", "add a new signing key (newest signs)"), ("list", "list key ids")):
        p = leaf(keys_sub, name, f"keys {name}", help=text)
        p.add_argument(
            "--kubernetes",
            action="store_true",
            help="the keys Secret of the operator (credentials as kubectl finds them) instead of --state",
        )

    sandbox = leaf(sub, "cattle-sandbox", help="run the Cattle API sandbox (an emulation, not Rancher)")
    for dest, (opt, default) in SANDBOX_FLAGS.items():
        add_option(sandbox, dest, opt, default, default=None)
    return parser


def settings_for(
    command: str, args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings of ``command``: each declared field it takes from its flag, else its environment
    variable, else its default (the dataclass's, or the command's own). A bad value:
    ``ArgumentTypeError`` naming the flag."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field_, opt in DECLARED:
        if not opt.takes(command):
            continue
        found, value = opt.value(getattr(args, field_.name, None), environ)
        if not found:
            if command not in opt.command_defaults:
                continue
            value = opt.command_defaults[command]
        values.update(zip(opt.into, value, strict=True) if opt.into else {field_.name: value})
    settings = Settings(**values)
    if OPTIONS["cattle_url"].takes(command) and (problem := settings.cattle_problem()):
        raise argparse.ArgumentTypeError(problem)
    return settings


def settings_from(args: argparse.Namespace) -> Settings:
    return settings_for("run", args)


def operator_settings_from(args: argparse.Namespace) -> Settings:
    return settings_for("operator", args)


def log_level_of(args: argparse.Namespace) -> str:
    """The level before anything else is parsed (every command logs)."""
    return logging_setting(args, "log_level")


def log_format_of(args: argparse.Namespace) -> str:
    return logging_setting(args, "log_format")


def logging_setting(args: argparse.Namespace, name: str) -> str:
    found, value = OPTIONS[name].value(getattr(args, name, None), os.environ)
    return str(value) if found else str(DEFAULTS[name])


def require_receivers_folder(settings: Settings) -> None:
    """``run`` serves the receivers of a folder: a missing one is a mistake in the command line (a
    typo, the wrong working folder), not an empty set, unless it is the folder the service makes."""
    folder = settings.receivers_dir
    if not folder.is_dir() and folder != settings.api_receivers_path:
        raise CommandError(f"--receivers: {folder} is not a folder (make it, or name the right one)")


def sandbox_value(args: argparse.Namespace, dest: str) -> Any:
    opt, default = SANDBOX_FLAGS[dest]
    found, value = opt.value(getattr(args, dest), os.environ)
    return value if found else default


def cmd_run(args: argparse.Namespace) -> int:
    from controller.service import run_service

    settings = settings_from(args)
    require_receivers_folder(settings)
    asyncio.run(run_service(settings, print_urls=args.print_urls))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from controller.drivers import load_drivers
    from controller.receivers.loader import load_paths

    receivers, problems = load_paths(args.paths, load_drivers(), standalone=not args.kubernetes)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in receiver manifests", file=sys.stderr)
        return 1
    print(f"{len(receivers)} receiver(s) valid")
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from controller.drivers import load_drivers
    from controller.receivers.crd import crd_text

    sys.stdout.write(crd_text(load_drivers().values()))
    return 0


def receiver_of(args: argparse.Namespace) -> tuple[str, str]:
    """``NAME`` (in ``-n NS``, else ``default``) or ``NS/NAME``."""
    namespace, sep, name = args.name.rpartition("/")
    if not sep:
        return args.receiver_namespace or "default", name
    if not namespace or not name or "/" in namespace:
        raise CommandError(f"expected NAME or NS/NAME, got {args.name!r}")
    if args.receiver_namespace not in (None, namespace):
        raise CommandError(f"-n {args.receiver_namespace} and {args.name} name two namespaces")
    return namespace, name


def cmd_trigger_url(args: argparse.Namespace) -> int:
    from controller.status_report import trigger_url_from_state

    settings = settings_for("trigger-url", args)
    namespace, name = receiver_of(args)
    url = trigger_url_from_state(settings.state_dir, namespace, name, settings.public_url or None)
    if url is None:
        print(f"no receiver {namespace}/{name} in {settings.state_dir}", file=sys.stderr)
        return 1
    print(url)
    return 0


def cmd_import_rancher(args: argparse.Namespace) -> int:
    from controller.cattle.errors import CattleError
    from controller.drivers import load_drivers
    from controller.rancher import importer
    from controller.receivers.schema import ReceiverSchema

    settings = settings_for("import-rancher", args)
    if not settings.cattle_url or settings.uses_sandbox:
        raise CommandError("--cattle-url (or CATTLE_URL) must name the Cattle that holds Rancher's receivers")
    drivers = load_drivers()
    try:
        outcome = asyncio.run(
            importer.import_receivers(
                settings,
                projects=args.projects,
                namespace=args.receiver_namespace,
                drivers=drivers,
                schema=ReceiverSchema.load(drivers.values()),
            )
        )
    except CattleError as e:
        raise CommandError(f"cannot read the receivers from Cattle: {e}") from e
    if args.kubernetes:
        sys.stdout.write(importer.render_stream(outcome.converted))
    else:
        importer.write_files(outcome, settings.receivers_dir, force=args.force)
    for line in outcome.done:
        print(line, file=sys.stderr if args.kubernetes else sys.stdout)
    for problem in outcome.problems:
        print(f"{PROG} import-rancher: {problem}", file=sys.stderr)
    return 1 if outcome.problems else 0


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def cmd_status(args: argparse.Namespace) -> int:
    from controller.drivers import load_drivers
    from controller.status_report import read_view, render_status, watch

    state_dir = settings_for("status", args).state_dir
    if not args.watch:
        print(render_status(state_dir, args.output))
        return 0
    drivers = load_drivers()

    def write(text: str) -> None:
        print(text + ("\n" if args.output == "text" else ""), flush=True)

    watch(lambda: read_view(state_dir, drivers, time.time()), args.output, write, interval=args.interval)
    return 0


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
    from controller.tokens import KEYS_DIR, KeyRing

    settings = settings_for(args.command_key, args)
    if args.kubernetes:
        for kid in asyncio.run(kube_keys(args.keys_command, settings.namespace)):
            print(kid)
        return 0
    keys_dir = settings.state_dir / KEYS_DIR
    if args.keys_command == "rotate":
        secure_state_dir(settings.state_dir)  # it may create the folder: 0700 like ``run`` makes it
        print(KeyRing.create_key(keys_dir))
        return 0
    if not keys_dir.is_dir():
        raise CommandError(f"no signing keys: {keys_dir} is not a folder (keys rotate makes one)")
    try:
        kids = KeyRing.load(keys_dir).kids
    except ValueError as e:  # no key files, or one that is not a key
        raise CommandError(f"no usable signing keys in {keys_dir}: {e}") from e
    for kid in kids:
        print(kid)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from controller.sandbox.app import SandboxOptions
    from controller.sandbox.seed import load_seed

    host, port = sandbox_value(args, "listen")
    options = SandboxOptions(
        access_key=sandbox_value(args, "access_key"),
        secret_key=sandbox_value(args, "secret_key"),
        latency_ms=sandbox_value(args, "latency_ms"),
        fail_rate=sandbox_value(args, "fail_rate"),
        transition_ms=sandbox_value(args, "transition_ms"),
    )
    seed_path = sandbox_value(args, "seed")
    seed = load_seed(seed_path) if seed_path else None  # None: the default world
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
    "crd": cmd_crd,
    "keys": cmd_keys,
    "import-rancher": cmd_import_rancher,
    "cattle-sandbox": cmd_sandbox,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    where = f"{PROG} {args.command_key}"
    try:
        configure_logging(log_level_of(args), log_format_of(args))
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # What Python's docs advise (library/signal, "Note on SIGPIPE"): point stdout at devnull so the
        # flush at exit doesn't fail again, and leave quietly, with SIGPIPE's 128 + 13.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    except (
        argparse.ArgumentTypeError,
        CommandError,
        SeedError,
        StoreError,
        KubeError,
        RancherKeyError,
        StateFolderBusy,
        OSError,
    ) as e:
        # A person's mistake (a bad flag, seed file or state folder): one line, no traceback.
        print(f"{where}: {e}", file=sys.stderr)
        return 2
