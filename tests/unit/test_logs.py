"""The controller's log formats: one line per record, exceptions named but never printed
with a traceback or a third-party message (libraries such as botocore log with exc_info)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from secretsync.controller import logs
from secretsync.errors import BackendAuthError

SECRET = "s3cr3t-VALUE-from-a-library"


@pytest.fixture(params=["text", "json"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure(request.param, "INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield request.param, stream
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def _records(fmt: str, stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    if fmt == "json":
        assert all(json.loads(line) for line in lines)
    return lines


def test_a_library_exception_is_named_without_traceback_or_message(
        captured: tuple[str, io.StringIO]) -> None:
    fmt, stream = captured
    try:
        raise ValueError(f"while parsing {SECRET}")
    except ValueError:
        logging.getLogger("botocore.credentials").warning("refresh failed", exc_info=True)
    lines = _records(fmt, stream)
    assert len(lines) == 1
    assert "refresh failed" in lines[0] and "ValueError" in lines[0]
    assert "Traceback" not in lines[0] and SECRET not in lines[0]


def test_our_exceptions_keep_their_value_free_message(
        captured: tuple[str, io.StringIO]) -> None:
    fmt, stream = captured
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise BackendAuthError("cannot get a token for ServiceAccount ns/default") from inner
    except BackendAuthError:
        logging.getLogger("secretsync.stores").error("store ns/vault", exc_info=True)
    (line,) = _records(fmt, stream)
    assert "BackendAuthError: cannot get a token for ServiceAccount ns/default" in line
    assert "Traceback" not in line and SECRET not in line and "KeyError" not in line


def test_a_multi_line_message_stays_one_line(captured: tuple[str, io.StringIO]) -> None:
    fmt, stream = captured
    logging.getLogger("kopf").error("first line\nsecond line")
    (line,) = _records(fmt, stream)
    assert "first line" in line and "second line" in line
