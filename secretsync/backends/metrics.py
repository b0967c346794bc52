"""Backend-call metrics shared by every backend.

One counter and one histogram, labelled by backend and operation, so an operator can see
how many calls each store makes (AWS and GCP bill per call), how many fail and why, and how
slow they are. Backends wrap each SDK call (or each paginated batch) in :func:`track`; the
outcome label is derived from the translated ``secretsync.errors`` type, so it is the same
vocabulary for every backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

from secretsync.errors import (
    BackendAuthError,
    BackendUnavailable,
    SecretNotFound,
)

BACKEND_CALLS = Counter(
    "secretsync_backend_calls_total",
    "Calls made to secret backends, by backend, operation and outcome "
    "(ok, not_found, auth_error, unavailable, error, cancelled).",
    ["backend", "operation", "outcome"],
)

BACKEND_CALL_SECONDS = Histogram(
    "secretsync_backend_call_duration_seconds",
    "Duration of calls made to secret backends, by backend and operation.",
    ["backend", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label for a call that raised ``exc`` (``None`` = success)."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, SecretNotFound):
        return "not_found"
    if isinstance(exc, BackendAuthError):
        return "auth_error"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    return "error"


@contextmanager
def track(backend: str, operation: str) -> Iterator[None]:
    """Count and time one backend call. Wrap the SDK call *and* its error translation, so
    the outcome reflects the translated error type. Works around ``await`` as well."""
    start = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        BACKEND_CALLS.labels(backend, operation, outcome_of(exc)).inc()
        raise
    else:
        BACKEND_CALLS.labels(backend, operation, "ok").inc()
    finally:
        BACKEND_CALL_SECONDS.labels(backend, operation).observe(time.perf_counter() - start)
