"""Structured logging: one JSON object per line, a request id on every line, secrets scrubbed.

The broker never passes a token, secret, code or assertion to a logger; ``Redactor`` is the
second line of defence for text that comes from elsewhere (library messages, exceptions).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SENSITIVE_NAMES = (r"code|code_verifier|refresh_token|access_token|id_token|token|client_secret|secret|"
                    r"password|assertion|subject_token|actor_token|client_assertion|state|nonce")
_PATTERNS = [
    # compact JWS/JWE: header.payload.signature, header always starts with base64url '{"'
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer|basic|dpop)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(rf"(?i)\b({_SENSITIVE_NAMES})=([^&\s\"',;]+)"), r"\1=[redacted]"),
    (re.compile(rf"(?i)([\"']({_SENSITIVE_NAMES})[\"']\s*:\s*)[\"'][^\"']*[\"']"), r"\1\"[redacted]\""),
]
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _scrub(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line per record: control characters from anywhere (a request path with %0A, a header, a claim) are
    escaped, so no input can start a line that looks like the broker's; a traceback follows on lines that
    each start with ``  | ``."""

    def format(self, record: logging.LogRecord) -> str:
        rid = request_id.get()
        line = f"{record.levelname.lower():7} {record.name}: {redact(record.getMessage())}"
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
        if extras:
            line += " " + " ".join(f"{k}={_scrub(v)}" for k, v in extras.items())
        if rid:
            line += f" request_id={rid}"
        line = one_line(line)
        if record.exc_info:
            line += "".join(f"\n  | {one_line(part)}"
                            for part in redact(self.formatException(record.exc_info)).splitlines())
        return line


_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character (CR, LF, NEL, the Unicode line separators...) written as an escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if re.fullmatch(_SENSITIVE_NAMES, str(k), re.I) else _scrub(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route the broker's, uvicorn's and alembic's logs through one formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # access lines come from the broker, without queries
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs, queries included
    logging.getLogger("alembic").setLevel(logging.WARNING)  # INFO: its plugin set-up and each step; the CLI reports
