"""The command line: flags, their environment fallbacks, settings, and one-line errors."""

from __future__ import annotations

import pytest

from controller.cli import build_parser, main, operator_settings_from, settings_from


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
        == "webhook-service cattle-sandbox: expected HOST:PORT, got 'nonsense'"
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
