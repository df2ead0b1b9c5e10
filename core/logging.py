"""Structured logs: one JSON object a line with the request id, personal data masked, and the
secrets a URL or a header may carry redacted.

Redacted (``redact``): the token of an acknowledgement link (``/ack/…``, ``/opinion/ack/…``: whoever
has it acknowledges an emergency), a web chat's ``session_id=`` (whoever has it reads the chat),
query values that are credentials (``access_token=``, ``key=`` of a robot webhook, ``sign=``…),
bearer tokens and the session cookie. Every record the handler writes passes through it, whoever
logged it (our access log, uvicorn's, a library's error), and so does each traceback.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

from core.masking import mask_text

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

REDACTED = "[redacted]"
_SECRET_QUERY = r"session_id|access_token|token|secret|key|sign|signature|msg_signature|echostr|password"
_SECRETS = (
    re.compile(r"(/(?:opinion/)?ack/)[^\s/?#\"'<>]+"),  # acknowledgement links
    re.compile(rf"((?<![A-Za-z0-9_])(?:{_SECRET_QUERY})=)[^&\s\"'<>]+", re.IGNORECASE),  # query values
    re.compile(rf"([\"'](?:{_SECRET_QUERY})[\"']\s*:\s*[\"'])[^\"']+", re.IGNORECASE),  # dict / JSON values
    re.compile(r"(\bBearer\s+)[^\s\"',;]+", re.IGNORECASE),  # Authorization headers
    re.compile(r"(anju_session=)[^;\s\"'<>]+"),  # the session cookie
    re.compile(r"(/hook/)[^\s/?#\"'<>]+"),  # a Feishu robot's webhook path is its key
)


def redact(text: str) -> str:
    """The text with every token, session id and credential a log line could carry replaced."""
    for pattern in _SECRETS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


def scrub(text: str) -> str:
    """What a log line may show: personal data masked, secrets redacted."""
    return mask_text(redact(text))


class MaskingFilter(logging.Filter):
    """Masks personal data and redacts secrets in every record, so a careless log call cannot leak
    a phone number or a link that acknowledges an emergency."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        record.msg = scrub(message)
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
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, [request id], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.rid = f" [{request_id}]" if request_id else ""
        text = super().format(record)
        return scrub(text) if record.exc_info else text


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
