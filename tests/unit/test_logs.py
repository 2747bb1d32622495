"""Structured logs: JSON lines with the request id, and secrets scrubbed from whatever reaches them."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from broker import logs

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize("text,secret", [
    (f"token {JWT} seen", JWT),
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ("GET /callback?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz", "SplxlOBeZQQYbYS6WxSbIA"),
    ("client_secret=hunter2&grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA", "tGzv3JOkF0XG5Qx2TlKWIA"),
    ("form username=alice&password=correct-horse", "correct-horse"),
    ('{"assertion": "opaque-assertion-value"}', "opaque-assertion-value"),
    ("Basic bXljbGllbnQ6c2VjcmV0", "bXljbGllbnQ6c2VjcmV0"),
])
def test_redact_removes_secrets(text: str, secret: str) -> None:
    assert secret not in logs.redact(text)


def test_redact_keeps_ordinary_text() -> None:
    assert logs.redact("GET /jwks 200 in 3 ms") == "GET /jwks 200 in 3 ms"


def test_json_lines_carry_request_id_and_scrubbed_extras() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    token = logs.request_id.set("req-123")
    try:
        logging.getLogger("broker.test").info("exchanged %s", JWT, extra={"form": {"client_secret": "s3"}})
    finally:
        logs.request_id.reset(token)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["request_id"] == "req-123" and entry["level"] == "info" and entry["logger"] == "broker.test"
    assert JWT not in stream.getvalue() and "s3" not in json.dumps(entry["form"])


def test_exceptions_are_scrubbed_too() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        logging.getLogger("broker.test").exception("failed")
    assert JWT not in stream.getvalue() and "[jwt]" in stream.getvalue()


def test_text_lines_cannot_be_forged_with_control_characters() -> None:
    """Text that came from a request (a path with %0A, a header, a claim) never starts a line of its own."""
    formatter = logs.TextFormatter()
    record = logging.makeLogRecord({"name": "broker.access", "levelname": "INFO", "levelno": logging.INFO,
                                    "msg": "GET %s", "args": ("/x\ninfo    broker.access: GET /forged\r\u2028",),
                                    "path": "/y\nwarning broker: forged"})
    try:
        raise ValueError("bad\ninfo    broker: forged too")
    except ValueError:
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).split("\n")
    assert lines[0].startswith("info    broker.access: GET /x\\ninfo") and "path=/y\\nwarning" in lines[0]
    assert len(lines) > 2 and all(line.startswith("  | ") for line in lines[1:])
