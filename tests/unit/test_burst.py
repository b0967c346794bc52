"""The gate that groups Secret writes while a backlog decrypts (controller.sealed.burst), and
the I/O threads the groups run on (runtime.use_io_threads)."""

from __future__ import annotations

import asyncio
import threading
import time

from secretsync.controller import runtime
from secretsync.controller.sealed.burst import Burst
from secretsync.controller.settings import Settings


async def _write(burst: Burst, log: list[tuple[str, float]], name: str) -> None:
    await burst.turn()
    log.append((name, time.monotonic()))


def test_without_a_backlog_a_write_goes_at_once() -> None:
    async def main() -> float:
        burst = Burst(window=5.0)
        t = time.monotonic()
        await burst.turn()
        return time.monotonic() - t

    assert asyncio.run(main()) < 0.5


def test_writes_during_a_backlog_wait_for_the_window_and_go_together() -> None:
    async def main() -> tuple[list[tuple[str, float]], float]:
        burst, log = Burst(window=0.3, size=10), []  # type: ignore[var-annotated]
        t = time.monotonic()
        with burst.expecting():  # a decryption still in flight
            writes = [asyncio.create_task(_write(burst, log, f"w{i}")) for i in range(3)]
            await asyncio.sleep(0.1)
            assert log == [] and burst.waiting == 3
            await asyncio.gather(*writes)
        return log, t

    log, t = asyncio.run(main())
    assert [n for n, _ in log] == ["w0", "w1", "w2"]
    assert all(0.25 <= at - t < 1.0 for _, at in log)


def test_a_full_group_goes_at_once() -> None:
    async def main() -> tuple[list[tuple[str, float]], float]:
        burst, log = Burst(window=30.0, size=4), []  # type: ignore[var-annotated]
        t = time.monotonic()
        with burst.expecting():
            await asyncio.wait_for(asyncio.gather(
                *(_write(burst, log, f"w{i}") for i in range(4))), timeout=5)
            assert burst.waiting == 0  # a new group starts empty
            late = asyncio.create_task(_write(burst, log, "late"))
            await asyncio.sleep(0.1)
            assert not late.done()  # the next group waits again
            burst.release()
            await late
        return log, t

    log, t = asyncio.run(main())
    assert len(log) == 5 and all(at - t < 5 for _, at in log)


def test_the_last_decryption_takes_the_waiting_writes_along() -> None:
    """A small backlog waits for its own decryptions, not for the window."""

    async def main() -> float:
        burst, log = Burst(window=30.0, size=100), []  # type: ignore[var-annotated]
        t = time.monotonic()

        async def reconcile(i: int) -> None:
            with burst.expecting():
                await asyncio.sleep(0.05 * i)  # decryptions ending one after the other
            await _write(burst, log, f"w{i}")

        await asyncio.wait_for(asyncio.gather(*(reconcile(i) for i in range(4))), timeout=5)
        # w3 goes at once (nothing left in flight) and lets the three waiting ones go
        assert [n for n, _ in log] == ["w3", "w0", "w1", "w2"]
        return time.monotonic() - t

    assert asyncio.run(main()) < 2.0


def test_a_cancelled_write_leaves_the_others_waiting_and_then_going() -> None:
    async def main() -> list[str]:
        burst, log = Burst(window=0.2, size=10), []  # type: ignore[var-annotated]
        with burst.expecting():
            a = asyncio.create_task(_write(burst, log, "a"))
            b = asyncio.create_task(_write(burst, log, "b"))
            await asyncio.sleep(0.05)
            a.cancel()
            await asyncio.wait_for(b, timeout=5)
            assert a.cancelled()
        return [n for n, _ in log]

    assert asyncio.run(main()) == ["b"]


def test_a_gate_left_open_by_an_ended_loop_is_dropped() -> None:
    """A stop during a backlog ends the loop with writes waiting; the engine's gate must not
    hand that loop's Event to the next one (RuntimeError: bound to a different loop)."""
    burst = Burst(window=30.0, size=100)

    async def stopped_while_waiting() -> None:
        with burst.expecting():
            waiter = asyncio.create_task(burst.turn())
            await asyncio.sleep(0.01)
            waiter.cancel()

    async def next_run() -> None:
        with burst.expecting():
            waiter = asyncio.create_task(burst.turn())
            await asyncio.sleep(0.01)
            assert burst.waiting == 1
            burst.release()
            await asyncio.wait_for(waiter, timeout=5)

    asyncio.run(stopped_while_waiting())
    asyncio.run(next_run())


def test_io_threads_run_a_whole_group_concurrently() -> None:
    async def main() -> int:
        threads = Settings().io_threads
        runtime.use_io_threads(threads)
        assert threads == 64 >= Burst().size
        # that many blocking calls run at once, a group of writes among them (the standard
        # executor: cores + 4); with fewer threads the barrier times out
        gate = threading.Barrier(threads, timeout=10)
        await asyncio.gather(*(asyncio.to_thread(gate.wait) for _ in range(gate.parties)))
        return gate.parties - gate.n_waiting

    assert asyncio.run(main()) == 64
