"""How log lines look: text for a person at a terminal, or one JSON object per line for log shippers.

``--log-format json`` writes each record as ``{"time", "level", "logger", "message"}`` plus
``"exception"`` (the traceback's text) when the record carries one, so a shipper needs no parsing
rules and a multi-line traceback stays one event. Redaction happens before formatting — messages
are built from masked values (``controller.redact``), the access log writes its own redacted line,
and aiohttp's protocol errors are rewritten by ``controller.listener.accesslog.ProtocolLog`` before
any handler sees them — so both formats show exactly the same (redacted) message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, time in UTC (ISO 8601, milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger writes to stderr at ``level`` in ``log_format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
