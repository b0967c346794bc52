"""Secret writes sent together while a backlog of SealedSecrets is being decrypted.

Why: on a cold start, a fail-over or a mass change, decryption finishes an object every few
milliseconds, and writing each Secret the moment it is ready wakes the API server, etcd and
every watcher (the garbage collector's among them) for one request at a time. Measured on
the sandbox (two shared cores, RSA busy on both, 600 creates arriving at 350/s): one by one,
the API server, etcd and the controller-manager spent 2.2-3.0 ms of CPU per create; sent in
groups of 24 at once, on as many connections, 1.0-1.2 ms. On shared cores that CPU is taken
from the decryption itself: ``bench/bench_unseal.py``'s medians went from 49-63 % of the RSA
ceiling to 64-70 % (groups of 48 did best; 24, 32 and 64 did less well).

So while decryptions are in flight (``expecting``) a write waits at the gate (``turn``) until
``SIZE`` writes wait, ``WINDOW`` has passed since the first write of its group, or no
decryption is left in flight (nothing else is about to join: a small backlog waits for its
own decryptions only). With nothing in flight -- the steady state, one object changed -- a
write goes at once. The group's writes then run concurrently on the I/O threads
(``runtime.io_threads()``, 64 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

SIZE = 48  # writes released together at most
WINDOW = 0.25  # seconds the first write of a group waits at most (a slow trickle)


class Burst:
    """The gate; see the module docstring. One per engine, used on the event loop only."""

    def __init__(self, window: float = WINDOW, size: int = SIZE) -> None:
        self.window, self.size = window, size
        self.expected = 0  # decryptions in flight: writes that may join soon
        self.waiting = 0  # writes waiting at the open gate
        self._gate: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # of the open gate

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Around a decryption whose result may be written."""
        self.expected += 1
        try:
            yield
        finally:
            self.expected -= 1

    async def turn(self) -> None:
        """Return when this write may go (see the module docstring); cancellation-safe."""
        if self.expected <= 0:
            self.release()  # the last one of a backlog takes the waiting ones along
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a gate left open by a loop that has ended (a stop)
            self._gate, self._timer, self.waiting, self._loop = None, None, 0, loop
        gate = self._gate
        if gate is None:
            gate = self._gate = asyncio.Event()
            self._timer = loop.call_later(self.window, self.release)
        self.waiting += 1
        if self.waiting >= self.size:
            self.release()
        await gate.wait()

    def release(self) -> None:
        """Let every waiting write go now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gate is not None:
            self._gate.set()
            self._gate = None
        self.waiting = 0
