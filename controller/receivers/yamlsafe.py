"""Reading one receivers file with every cost bounded, so no file can cost more than a small one.

A receivers folder is written by people and tools we do not control, and a hostile or broken file
must never cost more than an ordinary one: it must not stall the listener, fill the memory or the
log, or make the whole folder unreadable. So reading is done in two bounded steps:

1. **The bytes.** The file is opened without blocking (a FIFO or a device would otherwise hang the
   reader), must be a regular file after symlinks are followed (a mounted ConfigMap's files are
   symlinks), and is read up to ``MAX_FILE_BYTES``; a larger file is refused unread.
2. **The YAML.** PyYAML's event stream is walked first, iteratively, counting what the documents
   would become: the number of documents, the nesting depth, every scalar's length, and the number of
   values *after* alias expansion (an alias counts as the whole value it names, so a "billion laughs"
   file is refused before anything is built). Only a file within every bound is then loaded, with
   the C loader where PyYAML has it. Anything the loader still raises (a 5,000-digit integer is a
   ``ValueError``) is turned into ``ManifestError`` too.

A Receiver manifest is a few dozen values; the bounds leave ample room (a hundred documents of a
hundred values each) and keep the worst case to milliseconds. Every message is one short line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from controller.errors import WebhookServiceError

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 100
MAX_DEPTH = 32
MAX_VALUES = 20_000  # scalars and collections in the whole file, aliases expanded
MAX_SCALAR_CHARS = 64 * 1024

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ManifestError(WebhookServiceError):
    """A file that cannot be read or parsed within the bounds; the message is one short sentence."""


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refusing anything that is not a regular file or is larger than ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ManifestError(f"cannot read the file: {e.strerror or e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ManifestError(f"cannot read the file: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if size > limit:
        raise ManifestError(f"the file is larger than {limit} bytes")
    return b"".join(chunks)


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"not UTF-8 text (byte {e.start})") from e


def parse_documents(text: str) -> list[Any]:
    """Every document of a YAML stream, once the stream is known to be within the bounds."""
    check_bounds(text)
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {yaml_message(e)}") from e
    except (ValueError, OverflowError) as e:
        raise ManifestError("a value cannot be read (a number too large?)") from e
    except (RecursionError, MemoryError) as e:  # not expected within the bounds; never fatal
        raise ManifestError(f"the YAML cannot be built ({type(e).__name__})") from e


def check_bounds(text: str) -> None:
    """Walk the event stream and refuse a stream that would be too big, too deep or too many."""
    loader = _Loader(text)
    documents = values = 0
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values counted before it started)
    anchors: dict[str, int] = {}  # anchor -> how many values it expands to
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > MAX_DOCUMENTS:
                    raise ManifestError(f"more than {MAX_DOCUMENTS} documents in one file")
            elif isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append((event.anchor, values))
                values += 1
                if len(open_nodes) > MAX_DEPTH:
                    raise ManifestError(f"nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, before = open_nodes.pop()
                if anchor is not None:
                    anchors[anchor] = values - before
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR_CHARS:
                    raise ManifestError(f"a value is longer than {MAX_SCALAR_CHARS} characters")
                values += 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                values += anchors.get(event.anchor or "", 1)
            if values > MAX_VALUES:
                raise ManifestError(f"more than {MAX_VALUES} values once aliases are expanded")
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {yaml_message(e)}") from e
    finally:
        loader.dispose()


def yaml_message(error: Exception) -> str:
    """ "line 4, column 5: expected ',' or '}'": where and what, without PyYAML's multi-line context."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None and error.problem:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())
