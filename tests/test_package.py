"""The package as a user installs it: a wheel in a fresh virtual environment, outside the source tree.

The wheel is built from this checkout and installed without its dependencies into a new venv; the
dependencies come from the test's own venv through a ``.pth`` line (nothing is downloaded, and the
editable install of the source tree is not seen: a ``.pth`` line adds a folder to ``sys.path`` but
does not run that folder's own ``.pth`` hooks). Then the installed command runs from a folder that
is not the checkout: ``validate`` needs the Receiver CRD, which must come from the package itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.processes import REPO, Process, Sandbox, free_port, write_receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv holding only the wheel built from this checkout."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"  # a copy, so building leaves no build/ or egg-info in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build"))
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            wheels,
            source,
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("webhook_service-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        check=True,
        capture_output=True,
    )
    return env_dir / "bin"


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [installed / "python", "-c", "import controller; print(controller.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert str(installed.parent) in where and str(REPO) not in where


def test_validate_of_the_installed_package_reads_its_own_crd(installed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "receivers"
    folder.mkdir()
    write_receiver(folder, "web-up")
    (folder / "typo.yaml").write_text((folder / "web-up.yaml").read_text().replace("min:", "minn:"))
    result = subprocess.run(
        [installed / "webhook-service", "validate", str(folder)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "spec.scaleServiceConfig.minn: unknown field" in result.stdout


def test_the_installed_service_runs_against_the_sandbox(installed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "receivers"
    folder.mkdir()
    write_receiver(folder, "web-up")
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "projects:\n  - {id: 1a5, name: Default, services: [{id: 1s7, name: web, stackId: 1st1}]}\n"
    )
    sandbox = Sandbox(tmp_path, seed).start_and_wait()
    port = free_port()
    argv = [
        str(installed / "webhook-service"),
        "run",
        "--receivers",
        str(folder),
        "--state",
        str(tmp_path / "st"),
    ]
    argv += ["--listen", f"127.0.0.1:{port}", "--cattle-url", sandbox.url]
    service = Process("installed webhook-service", argv, tmp_path / "service.log")
    try:
        service.start().wait_http(f"http://127.0.0.1:{port}/readyz")
    finally:
        service.stop()
        sandbox.stop()
