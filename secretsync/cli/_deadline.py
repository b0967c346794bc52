"""A total deadline for each network call the CLI makes (``--timeout``, default 30 s).

Why not socket timeouts alone: they bound each read, not the call. A server that trickles
one byte every few seconds never trips a 30 s read timeout; a TLS handshake or a reply that
never comes, a DNS lookup, an exec credential plugin that hangs (run by the ``kubernetes``
package for some kubeconfigs) are not all reachable by one socket option either. So the call
runs on a daemon thread and the command waits for it at most the deadline; on expiry it gives
up with one line naming what timed out (exit 1). The abandoned thread is a daemon: it dies
with the process, which exits right after. Sockets we open ourselves also get the timeout,
so such a thread does not linger for long in the rare command that goes on.

Only ``threading`` is imported, and only when a network call is made (never on the
``seal --cert FILE`` path).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar, cast

from secretsync.errors import SecretSyncError

DEFAULT_TIMEOUT = 30.0
_T = TypeVar("_T")


class DeadlineExceeded(SecretSyncError):
    reason = "Timeout"


def seconds(text: str) -> float:
    """argparse ``type=`` for ``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def add_timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up on each network call (API server, certificate URL, controller) after "
        "this long in total (default: %(default)g)",
    )


def timeout_of(args: argparse.Namespace) -> float:
    value = getattr(args, "timeout", None)
    return float(value) if value else DEFAULT_TIMEOUT


def call(fn: Callable[[], _T], timeout: float, what: str) -> _T:
    """``fn()``'s result (or its exception), or ``DeadlineExceeded`` naming ``what`` once
    ``timeout`` seconds have passed without an answer."""
    import threading

    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="secretsync-network", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise DeadlineExceeded(f"{what}: no complete answer within {timeout:g} s (--timeout)")
    ok, value = outcome[0]
    if ok:
        return cast(_T, value)
    assert isinstance(value, BaseException)
    raise value
