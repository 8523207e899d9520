"""JSON logs: one object per line, the call ID lifted from the call's log adapter."""

from __future__ import annotations

import io
import json
import logging

from dialbridge.calls.call import CallLog
from dialbridge.config import load_config
from dialbridge.ops.logs import configure_logging


def test_json_lines_carry_the_call_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(load_config(None, log={"format": "json"}).log, stream=stream)
        CallLog(logging.getLogger("dialbridge.calls"), {"call_id": "abc-1"}).info(
            "answered %s", 200
        )
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("dialbridge.web").exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["call_id"] == "abc-1" and first["message"] == "[abc-1] answered 200"
    assert first["level"] == "info" and first["logger"] == "dialbridge.calls"
    assert first["ts"].endswith("Z")
    assert "call_id" not in second and "RuntimeError: boom" in second["exception"]


def test_text_format_is_the_default() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(load_config(None).log, stream=stream)
        logging.getLogger("dialbridge").info("hello")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = stream.getvalue().strip()
    assert line.endswith("INFO dialbridge hello") and not line.startswith("{")
