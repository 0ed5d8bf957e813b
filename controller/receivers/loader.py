"""Reading Receiver manifests from files: YAML, then the checks, then ``controller.model.Receiver`` s.

Each document is checked in the order a person would fix it — is it a Receiver at all, is it named,
does it match the CRD's schema, does the driver accept its settings — and every problem found is
reported with its file, document index and field path, so ``validate`` can list them all in one go.
Once a document fails a stage, later stages are skipped: their messages would only be noise.

Standalone mode (``run``, and ``validate`` unless told the manifests are for Kubernetes) also refuses
what only the operator can carry out: a ``signature.secretRef`` names a Kubernetes Secret, which a
service without a Kubernetes API can never read, so such a receiver is reported where it is
declared rather than loaded to fail every hit later.

A file yields ``FileLoad``: the valid receivers, the problems, and the names of *all* documents whose
metadata could be read. The watcher needs those names for its last-good rule: a receiver whose
document is now invalid keeps its last good version, while one whose document is gone is removed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from controller.drivers.contract import Driver
from controller.manifest import ReceiverSpec
from controller.model import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    KIND,
    TOKEN_GENERATION_ANNOTATION,
    Problem,
    RateLimit,
    Receiver,
    shown,
)
from controller.receivers.schema import ReceiverSchema
from controller.receivers.yamlsafe import ManifestError, decode, parse_documents, read_bounded

MANIFEST_SUFFIXES = (".yaml", ".yml")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_MAX, SUBDOMAIN_MAX = 63, 253
MAX_FOLDER_DEPTH = 16


@dataclass
class FileLoad:
    """What one file yielded.

    ``readable`` is False when the file can't be read, its YAML doesn't parse, or it holds no
    document at all: states a file passes through while it is being rewritten, so the watcher keeps
    the file's last good receivers instead of taking them for deleted. ``digest`` identifies the
    bytes read, so a file re-read with the same bytes need not be checked again.
    """

    receivers: list[Receiver] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # "ns/name" of every document whose metadata was readable
    readable: bool = True
    documents: dict[str, int] = field(default_factory=dict)  # "ns/name" -> index of its valid document
    digest: str = ""


def load_documents(
    path: Path,
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema | None = None,
    *,
    standalone: bool = False,
) -> FileLoad:
    """Load and check every document of one YAML file. Never raises: whatever goes wrong with the
    file is the file's problem, so one file can never stop the others from loading. ``standalone``:
    also refuse what only the operator can carry out (see the module docstring)."""
    schema = schema or ReceiverSchema.load(drivers.values())
    try:
        data = read_bounded(path)
    except ManifestError as e:
        return _unreadable(path, str(e))
    return load_bytes(path, data, drivers, schema, standalone=standalone)


def load_standalone(path: Path, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
    """``load_documents`` as ``run`` loads its folders."""
    return load_documents(path, drivers, schema, standalone=True)


def load_bytes(
    path: Path,
    data: bytes,
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema,
    *,
    standalone: bool = False,
) -> FileLoad:
    """Check the documents of a file's bytes (already read, within the size bound)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        documents = parse_documents(decode(data))
    except ManifestError as e:
        return _unreadable(path, str(e), digest)
    if all(d is None for d in documents):
        return _unreadable(path, "the file has no documents (to remove its receivers, delete it)", digest)
    result = FileLoad(digest=digest)
    for index, document in enumerate(documents):
        if document is None:
            continue  # an empty document, e.g. a trailing "---"
        try:
            problems = _load_document(document, path, index, drivers, schema, result, standalone=standalone)
        except Exception as e:  # a bug of ours must not be a crash of the folder; it is this document's
            problems = [Problem("", f"cannot be checked ({type(e).__name__})")]
        result.problems += [Problem(p.path, p.message, file=str(path), document=index) for p in problems]
    return result


def _unreadable(path: Path, message: str, digest: str = "") -> FileLoad:
    return FileLoad(problems=[Problem("", message, file=str(path))], readable=False, digest=digest)


def load_paths(
    paths: Sequence[Path],
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema | None = None,
    *,
    standalone: bool = False,
) -> tuple[list[Receiver], list[Problem]]:
    """Load files and folders (``*.yaml`` / ``*.yml``, recursively, sorted); a name declared twice is a
    problem at its later declaration, which is dropped."""
    schema = schema or ReceiverSchema.load(drivers.values())
    found: list[tuple[Receiver, int | None]] = []
    problems: list[Problem] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem("", "no such file or folder", file=str(path)))
            continue
        for file in manifest_files(path) if path.is_dir() else [path]:
            load = load_documents(file, drivers, schema, standalone=standalone)
            found += [(r, load.documents.get(r.key)) for r in load.receivers]
            problems += load.problems
    receivers, duplicates = drop_duplicates(found)
    return receivers, problems + duplicates


def manifest_files(directory: Path) -> list[Path]:
    """YAML files under ``directory``, sorted (see ``manifest_tree``)."""
    return manifest_tree(directory)[0]


def manifest_tree(directory: Path) -> tuple[list[Path], list[Path]]:
    """YAML files under ``directory``, sorted, and the folders listed to find them (``directory`` first).

    Hidden entries are skipped: editors' temporary files, and a mounted ConfigMap's ``..data``
    folders, whose files the visible symlinks already point at. Symlinked folders are not entered (a
    loop would never end); a YAML-named entry that is not a regular file (a device, a FIFO) is listed,
    so that reading it reports the problem."""
    found: list[Path] = []
    folders: list[Path] = []
    pending = [(directory, 0)]
    while pending:
        folder, depth = pending.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_FOLDER_DEPTH:
                        pending.append((Path(entry.path), depth + 1))
                elif entry.name.endswith(MANIFEST_SUFFIXES) and not entry.is_dir():
                    found.append(Path(entry.path))
    return sorted(found, key=path_order), folders


def path_order(path: Path) -> tuple[str, ...]:
    """The sort key of ``Path`` order, ten times cheaper than comparing the paths themselves."""
    return path.parts


def check_object(
    obj: Mapping[str, Any], drivers: Mapping[str, Driver], schema: ReceiverSchema
) -> tuple[Receiver | None, list[Problem]]:
    """Check a Receiver read from the Kubernetes API (the operator's and every replica's view).

    The API server has already checked the schema; the same checks run again so that both modes
    answer alike, and the driver's checks (e.g. max >= min) run only here. Fields the server adds
    (resourceVersion, managedFields, status) are left out: they are not the user's declaration.
    """
    metadata = obj.get("metadata") or {}
    declared = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: metadata[k] for k in ("name", "namespace", "annotations", "uid") if k in metadata},
        "spec": obj.get("spec"),
    }
    result = FileLoad()
    problems = _load_document(declared, Path("kubernetes"), 0, drivers, schema, result)
    if problems:
        return None, problems
    return replace(result.receivers[0], source="kubernetes"), []


def drop_duplicates(found: Iterable[tuple[Receiver, int | None]]) -> tuple[list[Receiver], list[Problem]]:
    """Keep the first declaration of each ns/name; each later one becomes a problem."""
    first: dict[str, Receiver] = {}
    problems: list[Problem] = []
    for receiver, document in found:
        if receiver.key in first:
            message = f"receiver {receiver.key} is already declared in {first[receiver.key].source}"
            problems.append(Problem("metadata.name", message, file=receiver.source, document=document))
        else:
            first[receiver.key] = receiver
    return list(first.values()), problems


def _load_document(
    document: Any,
    path: Path,
    index: int,
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema,
    result: FileLoad,
    *,
    standalone: bool = False,
) -> list[Problem]:
    """Check one document; on success append its Receiver to ``result``. Returns its problems."""
    if not isinstance(document, dict):
        return [Problem("", f"must be a mapping (a Receiver manifest), not {type(document).__name__}")]
    problems = _check_kind(document)
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        return [*problems, Problem("metadata", "required mapping is missing")]
    name, namespace = metadata.get("name"), metadata.get("namespace", DEFAULT_NAMESPACE)
    if isinstance(name, str) and isinstance(namespace, str):
        result.names.add(f"{namespace}/{name}")
    problems += _check_metadata(metadata)
    if problems:
        return problems
    if isinstance(document.get("spec"), dict):
        document = {**document, "spec": schema.default_spec(document["spec"])}
    problems = schema.problems(document)
    if problems:
        return problems
    spec = cast(ReceiverSpec, document["spec"])
    driver = drivers.get(spec["driver"])
    if driver is None:
        return [
            Problem("spec.driver", f"no such driver {spec['driver']!r} (known: {', '.join(sorted(drivers))})")
        ]
    if driver.config_field not in spec:
        return [Problem(f"spec.{driver.config_field}", f"required when driver is {driver.name}")]
    problems = driver.check(spec) + _check_signature(spec)
    if standalone and not problems:
        problems = _check_standalone(spec)
    if problems:
        return problems
    receiver = _receiver(metadata, spec, driver, path)
    if receiver.key in result.documents:
        return [Problem("metadata.name", f"receiver {receiver.key} is already declared in this file")]
    result.documents[receiver.key] = index
    result.receivers.append(receiver)
    return []


def _check_kind(document: Mapping[str, Any]) -> list[Problem]:
    problems = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            Problem("apiVersion", f"must be {API_VERSION} (got {shown(document.get('apiVersion'))})")
        )
    if document.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND} (got {shown(document.get('kind'))})"))
    return problems


def _check_metadata(metadata: Mapping[str, Any]) -> list[Problem]:
    problems = []
    name = metadata.get("name")
    if name is None:
        problems.append(Problem("metadata.name", "required field is missing"))
    elif not isinstance(name, str) or len(name) > SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.match(name):
        problems.append(
            Problem(
                "metadata.name",
                f"must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and "
                f"ending with a letter or digit, at most {SUBDOMAIN_MAX} characters (got {shown(name)})",
            )
        )
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or len(namespace) > LABEL_MAX or not DNS1123_LABEL.match(namespace):
        problems.append(
            Problem(
                "metadata.namespace",
                f"must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with "
                f"a letter or digit, at most {LABEL_MAX} characters (got {shown(namespace)})",
            )
        )
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        problems.append(Problem("metadata.annotations", "must be a mapping of strings (quote numbers)"))
    uid = metadata.get("uid")
    if uid is not None and not (isinstance(uid, str) and uid):
        problems.append(Problem("metadata.uid", f"must be a non-empty string (got {shown(uid)})"))
    return problems


def _check_signature(spec: ReceiverSpec) -> list[Problem]:
    """Exactly one place for the secret. secretRef passes in standalone mode too: the same manifest
    may be meant for the operator, and the listener answers its hits 401 with the reason."""
    signature = spec.get("signature")
    if signature is None or ("secretRef" in signature) != ("secretFile" in signature):
        return []
    return [Problem("spec.signature", "set exactly one of secretRef and secretFile")]


def _check_standalone(spec: ReceiverSpec) -> list[Problem]:
    if "secretRef" in (spec.get("signature") or {}):
        return [
            Problem(
                "spec.signature.secretRef",
                "names a Kubernetes Secret, which only the operator (webhook-service operator) can read;"
                " in standalone mode use secretFile",
            )
        ]
    return []


def _receiver(metadata: Mapping[str, Any], spec: ReceiverSpec, driver: Driver, path: Path) -> Receiver:
    rate_limit = spec.get("rateLimit")
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    return Receiver(
        namespace=namespace,
        name=metadata["name"],
        driver=driver.name,
        spec=spec,
        target=driver.target(spec, namespace),
        token_generation=(metadata.get("annotations") or {}).get(TOKEN_GENERATION_ANNOTATION, ""),
        uid=metadata.get("uid"),
        fire_on=frozenset(spec["fireOn"]),
        cooldown_seconds=float(spec["cooldownSeconds"]),
        dedupe_window_seconds=float(spec["dedupeWindowSeconds"]),
        rate_limit=RateLimit(rate_limit["requests"], float(rate_limit["perSeconds"])) if rate_limit else None,
        suspend=spec["suspend"],
        signature=spec.get("signature"),
        source=str(path),
        rancher_key_sha256=spec.get("rancherKeySha256"),
    )
