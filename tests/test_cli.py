"""The command line: flags, their environment fallbacks, settings, and one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml

import controller.operator.app
import controller.service
from controller import status_report as status
from controller.cli import DECLARED, DEFAULTS, build_parser, main, operator_settings_from, settings_from
from controller.flags import OPTION
from controller.settings import Settings
from controller.store.sqlite import SqliteStore
from controller.store.sqlite_schema import DB_NAME
from tests.processes import REPO, WEBHOOK_SERVICE

# Settings with no flag: tunables of the code (the ports come with --listen and --metrics-listen).
WITHOUT_FLAG = {
    "listen_port",
    "metrics_port",
    "watch_interval",
    "cattle_timeout",
    "confirm_timeout",
    "backoff_base",
    "backoff_cap",
    "token_cache_size",
    "key_refresh_interval",
    "log_summary_interval",
}
NO_FLAG = "\u2013"  # docs/operations.md's "none" in the flag and default columns
COMMANDS = ("run", "operator", "trigger-url", "status", "keys rotate", "keys list")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No declared variable set, whatever the environment running the tests has."""
    for _, opt in DECLARED:
        monkeypatch.delenv(opt.env, raising=False)
    yield monkeypatch


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line that should have been refused must not start a service inside the tests."""

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command line was accepted and the service started")

    monkeypatch.setattr(controller.service, "run_service", refuse)
    monkeypatch.setattr(controller.operator.app, "run_operator", refuse)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_flags_fall_back_to_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("CATTLE_URL", "http://rancher:8080/v2-beta")
    settings = settings_from(build_parser().parse_args(["run"]))
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 9999)
    assert settings.cattle_url == "http://rancher:8080/v2-beta"


def test_a_flag_wins_over_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_LISTEN", "127.0.0.1:9999")
    settings = settings_from(build_parser().parse_args(["run", "--listen", "0.0.0.0:8085"]))
    assert settings.listen_port == 8085


def test_defaults_are_rancher_like(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_LISTEN", "CATTLE_URL", "WEBHOOK_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from(build_parser().parse_args(["run"]))
    assert (settings.listen_host, settings.listen_port, settings.cattle_url) == ("0.0.0.0", 8085, "sandbox")
    assert settings.base_url == "http://127.0.0.1:8085"


def test_the_secret_key_is_masked_in_the_settings_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATTLE_ACCESS_KEY", "AK")
    monkeypatch.setenv("CATTLE_SECRET_KEY", "very-secret")
    described = settings_from(build_parser().parse_args(["run"])).describe()
    assert described["cattle_secret_key"] == "****"
    assert "very-secret" not in str(described)
    assert described["cattle_access_key"] == "AK"


def test_a_bad_listen_address_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cattle-sandbox", "--listen", "nonsense"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "webhook-service cattle-sandbox: --listen: expected HOST:PORT, got 'nonsense'"
    )


def test_status_of_a_missing_state_folder_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state", "/nonexistent-state"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("webhook-service status: cannot open")


def test_public_url_sets_the_base_of_trigger_urls() -> None:
    args = build_parser().parse_args(["run", "--public-url", "https://hooks.example.com/"])
    assert settings_from(args).base_url == "https://hooks.example.com"


def test_the_operator_has_no_default_cattle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATTLE_URL", raising=False)
    settings = operator_settings_from(build_parser().parse_args(["operator"]))
    assert settings.cattle_url == ""  # never the sandbox unless asked for


def test_the_operator_takes_the_shared_flags_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATTLE_URL", "http://rancher:8080/v2-beta")
    monkeypatch.setenv("WEBHOOK_NAMESPACE", "ops")
    settings = operator_settings_from(build_parser().parse_args(["operator", "--listen", "127.0.0.1:9000"]))
    assert (settings.cattle_url, settings.namespace, settings.listen_port) == (
        "http://rancher:8080/v2-beta",
        "ops",
        9000,
    )


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--max-body-bytes", "abc", "expected a positive integer, got 'abc'"),
        ("--max-connections", "1.5", "expected a positive integer, got '1.5'"),
        ("--resync-interval", "soon", "expected a number of seconds above 0, got 'soon'"),
        ("--body-timeout", "nan", "expected a number of seconds above 0, got 'nan'"),
        ("--hit-retention-days", "a week", "expected a number of days, at least 0.0007 (60 s), got 'a week'"),
    ],
)
def test_a_bad_value_of_a_flag_is_one_line_naming_it_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    assert main(["run", flag, value]) == 2
    assert one_line(capsys.readouterr().err) == f"webhook-service run: {flag}: {expected}"


@pytest.mark.parametrize(
    ("env", "flag", "value"),
    [
        ("WEBHOOK_MAX_BODY_BYTES", "--max-body-bytes", "abc"),
        ("WEBHOOK_KEEPALIVE_TIMEOUT", "--keepalive-timeout", "5s"),
        ("WEBHOOK_LISTEN", "--listen", "8085"),
    ],
)
def test_a_bad_value_from_the_environment_is_one_line_naming_flag_and_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: str, flag: str, value: str
) -> None:
    clean_env.setenv(env, value)
    assert main(["operator"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"webhook-service operator: {flag} (from {env}): expected ")
    assert line.endswith(f"got {value!r}")


@pytest.mark.parametrize(
    "flag",
    [
        "--max-connections",
        "--keepalive-timeout",
        "--header-timeout",
        "--body-timeout",
        "--max-body-bytes",
        "--resync-interval",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_limit_of_zero_or_less_is_refused_with_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    assert main(["run", flag, value]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"webhook-service run: {flag}: expected ")


def test_log_level_is_taken_after_the_command_and_before_it() -> None:
    assert build_parser().parse_args(["run", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert build_parser().parse_args(["--log-level", "DEBUG", "run"]).log_level == "DEBUG"
    after_wins = build_parser().parse_args(["--log-level", "ERROR", "status", "--log-level", "DEBUG"])
    assert after_wins.log_level == "DEBUG"


def test_log_level_reaches_the_settings_in_capitals(clean_env: pytest.MonkeyPatch) -> None:
    assert settings_from(build_parser().parse_args(["run", "--log-level", "debug"])).log_level == "DEBUG"


@pytest.mark.parametrize("argv", [["run", "--log-level", "LOUD"], ["--log-level", "LOUD", "status"]])
def test_an_unknown_log_level_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    assert "--log-level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'" in one_line(
        capsys.readouterr().err
    )


def test_an_unknown_log_level_from_the_environment_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clean_env.setenv("WEBHOOK_LOG_LEVEL", "LOUD")
    assert main(["validate", str(tmp_path)]) == 2
    assert "--log-level (from WEBHOOK_LOG_LEVEL)" in one_line(capsys.readouterr().err)


def test_an_unknown_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-such-flag", "5"]) == 2
    assert "unrecognized arguments: --no-such-flag 5" in one_line(capsys.readouterr().err)


def test_version_prints_the_installed_package_version() -> None:
    answer = subprocess.run([WEBHOOK_SERVICE, "--version"], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0
    assert re.fullmatch(r"webhook-service \d+\.\d+\S*\n", answer.stdout), answer.stdout


def test_keys_list_of_a_missing_folder_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["keys", "list", "--state", str(tmp_path / "no-such-dir")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("webhook-service keys list: no signing keys: ")


def test_keys_list_of_a_folder_without_keys_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    assert main(["keys", "list", "--state", str(tmp_path)]) == 2
    assert "a key ring needs at least one key" in one_line(capsys.readouterr().err)


def test_keys_rotate_creates_the_state_folder_0700(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "new" / "state"
    old = os.umask(0o022)
    try:
        assert main(["keys", "rotate", "--state", str(state)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    kid = capsys.readouterr().out.strip()
    assert main(["keys", "list", "--state", str(state)]) == 0
    assert capsys.readouterr().out.strip() == kid


async def empty_store(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """141 (128 + SIGPIPE), as a tool killed by SIGPIPE exits; nothing on stderr."""
    asyncio.run(empty_store(tmp_path / DB_NAME))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as after `| head -1`
    try:
        answer = subprocess.run(
            [WEBHOOK_SERVICE, "status", "--state", str(tmp_path)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (answer.returncode, answer.stderr) == (141, "")


def test_status_o_json_prints_the_status_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(empty_store(tmp_path / DB_NAME))
    assert main(["status", "--state", str(tmp_path), "-o", "json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert (view["receivers"], view["targets"], view["problems"]) == ([], [], [])


def test_status_o_yaml_prints_the_status_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(empty_store(tmp_path / DB_NAME))
    assert main(["status", "--state", str(tmp_path), "--output", "yaml"]) == 0
    assert set(yaml.safe_load(capsys.readouterr().out)) == {
        "generated_at", "cattle", "receivers", "targets", "recent_hits", "problems",
    }  # fmt: skip


def test_status_watch_refuses_an_interval_that_is_not_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--watch", "--interval", "0"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture
def asked_for(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The (namespace, name) trigger-url looks up, answered with a made-up URL."""
    asked: list[tuple[str, str]] = []

    def fake(state_dir: Path, namespace: str, name: str, public_url: str | None) -> str:
        asked.append((namespace, name))
        return f"http://hooks/{namespace}/{name}"

    monkeypatch.setattr(status, "trigger_url_from_state", fake)
    return asked


@pytest.mark.parametrize(
    ("argv", "receiver"),
    [
        (["web-up"], ("default", "web-up")),
        (["-n", "ops", "web-up"], ("ops", "web-up")),
        (["ops/web-up"], ("ops", "web-up")),
        (["-n", "ops", "ops/web-up"], ("ops", "web-up")),
    ],
)
def test_trigger_url_takes_name_n_namespace_name_and_namespace_slash_name(
    asked_for: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    receiver: tuple[str, str],
) -> None:
    assert main(["trigger-url", *argv]) == 0
    assert asked_for == [receiver]
    assert capsys.readouterr().out == f"http://hooks/{receiver[0]}/{receiver[1]}\n"


@pytest.mark.parametrize("argv", [["-n", "dev", "ops/web-up"], ["a/b/c"], ["ops/"]])
def test_trigger_url_refuses_an_ambiguous_name_with_one_line(
    asked_for: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["trigger-url", *argv]) == 2
    assert one_line(capsys.readouterr().err).startswith("webhook-service trigger-url: ")
    assert asked_for == []


def test_every_setting_is_declared_once_or_is_a_known_tunable() -> None:
    declared = {f.name for f in fields(Settings) if OPTION in f.metadata}
    assert declared == {f.name for f, _ in DECLARED}
    assert declared | WITHOUT_FLAG == {f.name for f in fields(Settings)}
    assert not declared & WITHOUT_FLAG
    for command in COMMANDS:
        taken = [opt for _, opt in DECLARED if opt.takes(command)]
        flags = [opt.flag for opt in taken if opt.flag is not None]
        envs = [opt.env for opt in taken]
        assert len(flags) == len(set(flags)), command
        assert len(envs) == len(set(envs)), command


def test_the_parser_defaults_are_the_dataclass_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert settings_from(build_parser().parse_args(["run"])) == Settings()
    # the one deliberate difference: no default Cattle for the operator
    assert operator_settings_from(build_parser().parse_args(["operator"])) == replace(
        Settings(), cattle_url=""
    )


def test_the_help_shows_the_dataclass_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    assert main(["run", "--help"]) == 0
    help_text = capsys.readouterr().out
    for field_, opt in DECLARED:
        if opt.flag is None or not opt.takes("run"):
            continue
        value = tuple(DEFAULTS[n] for n in opt.into) if opt.into else field_.default
        assert f"(env {opt.env}; default {opt.describe_default(value)})" in help_text, opt.flag


def test_the_docs_document_each_run_flag_as_declared() -> None:
    """docs/operations.md's `run` flags table: the same flags, variables and defaults as the declarations."""
    readme = (REPO / "docs" / "operations.md").read_text()
    table = readme.split("`run` flags:", 1)[1].split("\n\n", 2)[1]
    documented = {}
    for row in table.splitlines()[2:]:
        flag, env, default = (cell.strip().strip("`") for cell in row.strip("|").split("|")[:3])
        documented[flag.split(" ")[0]] = (env, "none" if default == NO_FLAG else default)
    documented.pop("--print-urls")
    declared: dict[str, tuple[str, str]] = {}
    secrets = []
    for field_, opt in DECLARED:
        if not opt.takes("run"):
            continue
        value = tuple(DEFAULTS[n] for n in opt.into) if opt.into else field_.default
        if opt.flag is None:
            secrets.append(opt.env)
        else:
            declared[opt.flag] = (opt.env, opt.describe_default(value))
    assert sorted(documented.pop(NO_FLAG)[0].replace("`", "").split(", ")) == sorted(secrets)
    assert documented == declared
