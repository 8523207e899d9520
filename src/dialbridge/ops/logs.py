"""Log output: readable text, or one JSON object per line carrying the call ID.

Calls log through :class:`dialbridge.calls.call.CallLog`, which passes ``extra={"call_id": …}``;
the JSON formatter lifts that (and any other ``extra`` field) into the object, so
``journalctl -u dialbridge -o cat | jq 'select(.call_id == "…")'`` follows one call.
``[log] format = "json"`` in dialbridge.toml switches it on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "call_id"?, ..., "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(log_config: Any, *, stream: TextIO | None = None) -> logging.Handler:
    """Install one root handler as ``[log]`` says (``format``: text/json, ``level``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_config.format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_config.level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler
