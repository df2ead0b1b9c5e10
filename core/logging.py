"""Structured logs: one JSON object a line with the request id, personal data masked."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from core.masking import mask_text

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class MaskingFilter(logging.Filter):
    """Masks personal data in every record, so a careless log call cannot leak a phone number."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key in ("process_name", "job_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, [request id], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.rid = f" [{request_id}]" if request_id else ""
        text = super().format(record)
        return mask_text(text) if record.exc_info else text


def configure_logging(*, level: str = "INFO", json_lines: bool = True) -> None:
    """Install one handler on the root logger; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_anju", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._anju = True  # type: ignore[attr-defined]
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request's full URL at INFO: WeChat's token and access_token are in them.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
