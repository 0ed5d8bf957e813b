"""The Cattle settings are checked before anything starts: a URL or key pair that cannot be right is one
line and exit 2, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

import controller.operator.app
import controller.service
from controller.cli import main
from controller.settings import Settings

URL = "http://rancher.example:8080/v2-beta"


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CATTLE_URL", "CATTLE_ACCESS_KEY", "CATTLE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command line was accepted and the service started")

    monkeypatch.setattr(controller.service, "run_service", refuse)
    monkeypatch.setattr(controller.operator.app, "run_operator", refuse)


@pytest.mark.parametrize("url", ["rancher.example:8080", "ftp://rancher.example/v2-beta", "http:///v2-beta"])
def test_a_url_without_an_http_scheme_and_host_is_refused(url: str) -> None:
    assert Settings(cattle_url=url).cattle_problem() == (
        f"--cattle-url: expected an http:// or https:// URL with a host, got {url!r}"
    )


@pytest.mark.parametrize("url", [URL, "https://rancher.example/v2-beta", "http://ak:sk@rancher:8080/v1"])
def test_a_url_with_a_scheme_and_host_is_accepted(url: str) -> None:
    assert Settings(cattle_url=url).cattle_problem() is None


def test_the_sandbox_and_no_cattle_need_no_url() -> None:
    assert Settings(cattle_url="sandbox").cattle_problem() is None
    assert Settings(cattle_url="").cattle_problem() is None


def test_an_access_key_without_its_secret_is_refused() -> None:
    assert Settings(cattle_url=URL, cattle_access_key="AK").cattle_problem() == (
        "CATTLE_ACCESS_KEY is set but CATTLE_SECRET_KEY is not: give both Cattle API keys, or neither"
    )


def test_a_secret_key_without_its_access_key_is_refused() -> None:
    assert Settings(cattle_url=URL, cattle_secret_key="SK").cattle_problem() == (
        "CATTLE_SECRET_KEY is set but CATTLE_ACCESS_KEY is not: give both Cattle API keys, or neither"
    )


def test_a_url_naming_a_user_without_a_password_is_refused_masked() -> None:
    problem = Settings(cattle_url="http://AKEY@rancher:8080/v2-beta").cattle_problem()
    assert problem == (
        "--cattle-url: the URL names an access key without its secret key (http://****@rancher:8080/v2-beta)"
    )


def test_a_bad_cattle_url_at_run_is_one_line_exit_2_and_no_state_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code = main(["run", "--receivers", str(tmp_path), "--state", str(state), "--cattle-url", "rancher:8080"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "webhook-service run: --cattle-url: expected an http:// or https:// URL with a host,"
        " got 'rancher:8080'"
    ]
    assert not state.exists()


def test_half_a_key_pair_for_the_operator_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CATTLE_URL", URL)
    monkeypatch.setenv("CATTLE_ACCESS_KEY", "AK")
    assert main(["operator"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("webhook-service operator: CATTLE_ACCESS_KEY is set but CATTLE_SECRET_KEY is not")


def test_a_missing_receivers_folder_at_run_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["run", "--receivers", str(tmp_path / "absent"), "--state", str(state)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"webhook-service run: --receivers: {tmp_path / 'absent'} is not a folder"
        " (make it, or name the right one)"
    ]
    assert not state.exists()


def test_the_api_receivers_folder_may_be_the_receivers_folder_before_it_exists(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "api-receivers"
    with pytest.raises(AssertionError, match="the service started"):
        main(["run", "--receivers", str(folder), "--state", str(tmp_path / "state")])
