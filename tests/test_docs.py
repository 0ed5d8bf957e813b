"""The documentation works as written: every fenced block of README.md and docs/*.md is checked.

Each block is sorted by what it holds, and each kind has its check:

- a Receiver (YAML): ``webhook-service validate`` accepts it, and its target exists in the world
  ``make run`` starts (``examples/sandbox-seed.yaml``);
- a shell block: every ``webhook-service`` command line parses with the CLI's own parser, ``make``
  names a target of the Makefile, ``kubectl`` names files that exist, ``export`` names a setting's
  variable, ``bench`` modules exist; in the files written against ``make run``'s world (``RUN``) every
  command runs for real against a service started as ``make run`` starts it, and a ``json`` block
  after a command is the answer it must give (``"..."`` stands for any value);
- Alertmanager configurations and Prometheus rules pass ``amtool`` and ``promtool``, a kustomization
  overlay names the base's folder and image;
- links between the files, and their anchors, resolve.

A block none of these can check is listed in ``UNCHECKED`` with the reason, so a new block that
nothing checks fails the suite instead of going stale unnoticed.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import DECLARED, UsageError, build_parser
from controller.sandbox.seed import load_seed
from tests.processes import REPO, WEBHOOK_SERVICE, Service
from tests.test_manifests import required_binary
from tests.toolbox import until

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SEED = REPO / "examples" / "sandbox-seed.yaml"
# Written against `make run`'s world, in this order: their commands run for real.
RUN = ("README.md", "docs/receivers.md", "docs/receivers-api.md")
ANY = "..."

# (file, first line of the block) -> why no test runs it.
UNCHECKED: Mapping[tuple[str, str], str] = {
    ("README.md", "Cattle: SANDBOX (emulated in-process at http://127.0.0.1:39437/v2-beta, not Rancher)"): (
        "sample output of `make run` (--print-urls) and of `status`; `status`'s rows are checked "
        "against the real command"
    ),
    ("docs/security.md", "{public-url}/v1-webhooks/endpoint?key=<token>&projectId=<projectId>"): (
        "the URL's shape, with placeholders; the tour's URLs are real"
    ),
    ("docs/security.md", "spec:"): "a fragment (secretRef needs operator mode and a Secret)",
    (
        "docs/operations.md",
        "in the last 60s: 1523 hit(s) (1500 accepted, 23 duplicate); 4 refused (3 401 token_missing, 1 429 "
        "rate_limited)",
    ): ("a sample log line; tests/test_listener.py and tests/test_listener_summary.py check the wording"),
    ("docs/design.md", '{"receiver": "default/web-up", "outcome": "accepted", "hit": "9f0c..."}'): (
        "the answer's shape; the tour gets it from a real service"
    ),
}
# Receivers whose target is not in the Cattle sandbox: why.
OTHER_WORLDS = {"scaleWorkload": "scales a Kubernetes workload (operator mode), not a Cattle service"}


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    lang: str
    text: str
    follows: Block | None  # the block before it in the same file

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.text.split("\n", 1)[0])

    def documents(self) -> list[Any]:
        return [d for d in yaml.safe_load_all(self.text) if d is not None]


def blocks() -> Iterator[Block]:
    for path in DOCS:
        lines = path.read_text().split("\n")
        before = None
        i = 0
        while i < len(lines):
            if lines[i].startswith("```"):
                end = lines.index("```", i + 1)
                before = Block(
                    str(path.relative_to(REPO)),
                    i + 1,
                    lines[i][3:].strip(),
                    "\n".join(lines[i + 1 : end]),
                    before,
                )
                yield before
                i = end
            i += 1


def kind(block: Block) -> str:
    if block.lang == "yaml":
        docs = block.documents()
        if all(isinstance(d, dict) and d.get("kind") == "Receiver" and "apiVersion" in d for d in docs):
            return "receiver"
        first = docs[0]
        if first.get("kind") == "Kustomization":
            return "kustomization"
        if "groups" in first:
            return "rules"
        if "receivers" in first:
            return "alertmanager"
    if block.lang == "sh":
        return "shell"
    follows = block.follows
    if block.file in RUN and follows is not None and follows.lang == "sh" and block.lang == "json":
        return "answer"
    return "unchecked"


def commands(block: Block) -> list[str]:
    """The block's commands: continuation lines joined, a quote left open continued on the next line,
    comment lines dropped."""
    found: list[str] = []
    pending = ""
    for line in block.text.replace("\\\n", " ").split("\n"):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quoted argument spans lines
            continue
        found.append(pending)
        pending = ""
    assert not pending, f"{block.file}:{block.line}: unbalanced quotes"
    return found


def words(command: str) -> list[list[str]]:
    """Each piped command's words, comments dropped."""
    parts: list[list[str]] = [[]]
    for word in shlex.split(command, comments=True):
        if word == "|":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def of_kind(name: str) -> list[Block]:
    return [b for b in blocks() if kind(b) == name]


def test_every_block_is_checked_or_listed_with_its_reason() -> None:
    unchecked = {b.key for b in of_kind("unchecked")}
    assert unchecked == set(UNCHECKED), "check the new block, or list it in UNCHECKED with the reason"


def receivers() -> list[tuple[Block, dict[str, Any]]]:
    return [(b, d) for b in of_kind("receiver") for d in b.documents()]


def test_every_receiver_example_validates(tmp_path: Path) -> None:
    for n, (_, doc) in enumerate(receivers()):
        doc["metadata"]["name"] = f"{doc['metadata']['name']}-{n}"  # the same name in several files
        (tmp_path / f"{n}.yaml").write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [WEBHOOK_SERVICE, "validate", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v.lower() for k, v in labels.items()}
    return all(
        k.lower() in lowered and (not v or lowered[k.lower()] == v.lower()) for k, v in selector.items()
    )


def test_every_receiver_example_targets_something_in_make_runs_world() -> None:
    projects = {p.id: p for p in load_seed(SEED).projects}
    for block, doc in receivers():
        driver = doc["spec"]["driver"]
        if driver in OTHER_WORLDS:
            continue
        config = doc["spec"][f"{driver}Config"]
        project = projects[str(config["projectId"])]
        where = f"{block.file}:{block.line} {doc['metadata']['name']}"
        if driver == "scaleService":
            assert config["serviceId"] in {s.id for s in project.services}, where
        elif driver == "forwardPost":
            assert config["serviceName"] in {s.name for s in project.services}, where
        elif driver == "serviceUpgrade":
            assert any(selects(config["serviceSelector"], s.labels) for s in project.services), where
        elif driver == "scaleHost":
            assert any(selects(config["hostSelector"], h.labels) for h in project.hosts), where
        else:
            pytest.fail(f"{where}: no check for the driver {driver}")


def test_the_driver_examples_are_make_runs_receivers() -> None:
    examples = {}
    for path in (REPO / "examples" / "receivers").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            examples[doc["metadata"]["name"]] = doc["spec"]
    shown = [(b, d) for b, d in receivers() if b.file == "docs/receivers.md"]
    assert {d["spec"]["driver"] for _, d in shown} >= {
        "scaleService",
        "scaleHost",
        "forwardPost",
        "serviceUpgrade",
    }
    for block, doc in shown:
        assert doc["spec"] == examples.get(doc["metadata"]["name"]), f"{block.file}:{block.line}"


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.MULTILINE))


def declared_variables() -> set[str]:
    return {opt.env for _, opt in DECLARED if opt.env}


def check_command(argv: list[str], where: str) -> None:
    program, args = argv[0], argv[1:]
    if program in ("webhook-service", ".venv/bin/webhook-service"):
        try:
            build_parser().parse_args(args)
        except UsageError as e:
            pytest.fail(f"{where}: {e}")
    elif program == "make":
        targets = [a for a in args if "=" not in a]
        assert set(targets) <= makefile_targets(), where
    elif program == ".venv/bin/python":
        assert args[0] == "-m" and (REPO / (args[1].replace(".", "/") + ".py")).is_file(), where
    elif program == "kubectl":
        for flag, value in itertools.pairwise(args):
            if flag in ("-f", "-k") and value != "-":
                assert (REPO / value).exists(), where
                assert value.startswith(("manifests/", "crds/")), where
    elif program == "export":
        assert {a.split("=", 1)[0] for a in args} <= declared_variables(), where
    elif program in ("curl", "apt-get", "base64"):
        pass  # curl lines run against make run's world; the packages are .ci/run's; base64 decodes a pipe
    else:
        pytest.fail(f"{where}: no check for `{program}`")


def test_every_command_line_parses() -> None:
    for block in of_kind("shell"):
        for command in commands(block):
            for argv in words(command):
                check_command(argv, f"{block.file}:{block.line}: {command}")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_links_and_their_anchors_resolve() -> None:
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            assert resolved.exists(), f"{path.relative_to(REPO)}: {target}"
            if anchor:
                assert anchor in anchors(resolved), f"{path.relative_to(REPO)}: {target}"


def matches(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    return bool(expected == actual)


def shown_rows(output: str) -> list[list[str]]:
    """The receiver and target rows of a documented `status` output, as words."""
    return [line.split() for line in output.split("\n") if line.startswith("  ") and line.split()[0] != ANY]


def shows(rows: list[list[str]], output: str) -> bool:
    """Whether each documented row's words, timestamps aside, are in some line of the output, in order."""
    for row in rows:
        wanted = [w for w in row if not re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+Z", w)]
        if not any(is_subsequence(wanted, line.split()) for line in output.split("\n")):
            return False
    return True


def is_subsequence(wanted: list[str], line: list[str]) -> bool:
    it = iter(line)
    return all(w in it for w in wanted)


def status_shows(documented: Block, command: str, service: Service) -> bool:
    return shows(shown_rows(documented.text), run(command, service))


def run(command: str, service: Service) -> str:
    for written, real in (
        (".webhook-state", str(service.state)),
        ("127.0.0.1:8085", f"127.0.0.1:{service.port}"),
    ):
        command = command.replace(written, real)
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=REPO, timeout=30, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    return result.stdout


@pytest.mark.e2e
async def test_the_commands_written_against_make_run_answer_as_documented(tmp_path: Path) -> None:
    service = Service(
        tmp_path,
        receivers=REPO / "examples" / "receivers",
        state=tmp_path / "state",
        cattle_url="sandbox",
        extra=("--sandbox-seed", str(SEED)),
    )
    try:
        service.start_and_wait()
        for file in RUN:
            written = [b for b in blocks() if b.file == file]
            for block, after in zip(written, [*written[1:], None], strict=True):
                if block.lang != "sh":
                    continue
                for command in commands(block):
                    if not command.startswith(("curl", ".venv/bin/webhook-service")):
                        continue  # make and apt-get: what the person at the terminal runs first
                    where = f"{file}:{block.line}: {command}"
                    if after is not None and kind(after) == "answer":
                        answer = run(command, service)
                        assert matches(json.loads(after.text), json.loads(answer)), f"{where}\n{answer}"
                    elif after is not None and after.lang == "" and " status " in command:
                        await until(partial(status_shows, after, command, service), what=where)
                    else:
                        answer = run(command, service)
                        assert '"type": "error"' not in answer, f"{where}\n{answer}"
    finally:
        service.stop()


def test_the_alertmanager_configurations_pass_amtool(tmp_path: Path) -> None:
    amtool = required_binary("amtool", "prometheus-alertmanager")
    for n, block in enumerate(of_kind("alertmanager")):
        config = block.documents()[0]
        # a receivers-only snippet replaces the receivers of a whole configuration: route to its first
        config.setdefault("route", {"receiver": config["receivers"][0]["name"]})
        routed = {r["receiver"] for r in config["route"].get("routes", [])}
        config["receivers"] += [{"name": name} for name in routed - {r["name"] for r in config["receivers"]}]
        path = tmp_path / f"alertmanager-{n}.yml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"{block.file}:{block.line}\n{result.stdout}{result.stderr}"


def test_the_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = required_binary("promtool", "prometheus")
    for n, block in enumerate(of_kind("rules")):
        path = tmp_path / f"rules-{n}.yml"
        path.write_text(block.text)
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"{block.file}:{block.line}\n{result.stdout}{result.stderr}"


def test_the_overlay_changes_the_image_of_the_base() -> None:
    base = yaml.safe_load((REPO / "manifests" / "kustomization.yaml").read_text())
    for block in of_kind("kustomization"):
        overlay = block.documents()[0]
        # the overlay is a folder next to manifests/
        assert [(REPO / "overlay" / b).resolve() for b in overlay["bases"]] == [REPO / "manifests"]
        assert {i["name"] for i in overlay["images"]} <= {i["name"] for i in base["images"]}
