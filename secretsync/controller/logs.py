"""Structured logging for the controller: one JSON object per line, or plain text.

Log records only ever carry object names, reasons and key fingerprints -- never values; the
JSON form makes that easy to check and to ship to a log pipeline. Either form is one line per
record: an exception is named, never printed with its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from secretsync.errors import SecretSyncError


def describe_error(record: logging.LogRecord) -> str | None:
    """The exception a record carries, in one line: its type, and its message only when it is
    one of ours (written to name objects and reasons, never values); third-party messages and
    tracebacks stay out (libraries such as botocore log with ``exc_info``)."""
    if not record.exc_info or record.exc_info[0] is None:
        return None
    exc = record.exc_info[1]
    if isinstance(exc, SecretSyncError):
        return f"{type(exc).__name__}: {exc.message}"
    return record.exc_info[0].__name__


class TextFormatter(logging.Formatter):
    """Plain text, one line per record, exceptions as ``describe_error`` gives them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        error = describe_error(record)
        if error is not None:
            line += f" ({error})"
        return line.replace("\n", " ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj = getattr(record, "k8s_obj", None)
        if obj:
            out["object"] = obj
        error = describe_error(record)
        if error is not None:
            out["error"] = error
        return json.dumps(out, separators=(",", ":"))


def configure(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf logs every handler run at INFO; keep its own chatter at WARNING.
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
