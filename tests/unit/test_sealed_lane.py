"""The status/Event lane: held back while Secrets are being written, newest status wins,
Events in order after their status, bounded wait, API errors handed back for a retry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from secretsync.controller.sealed import lane as sealed_lane
from secretsync.controller.sealed.lane import EventSpec, Lane, Ref
from secretsync.errors import KubeError, KubeNotFound

REF: Ref = ("secretsync.io/v1alpha1", "ns", "a")
OTHER: Ref = ("secretsync.io/v1alpha1", "ns", "b")


class Recorder:
    """Stands in for the API calls (the lane's I/O is two plain callables)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any]] = []
        self.fail_status: Exception | None = None
        self.fail_event: Exception | None = None
        self.delay = 0.0  # seconds each status write takes
        self.in_flight = self.most_in_flight = 0
        self._mutex = threading.Lock()

    def status(self, kube: Any, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        if self.fail_status is not None:
            raise self.fail_status
        with self._mutex:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self._mutex:
            self.in_flight -= 1
            self.writes.append(("status", (obj["metadata"]["name"], status["n"])))

    def event(self, kube: Any, obj: Mapping[str, Any], spec: EventSpec) -> None:
        if self.fail_event is not None:
            raise self.fail_event
        self.writes.append(("event", (obj["metadata"]["name"], spec[0])))


def obj(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}}


async def started(errors: list[Ref] | None = None) -> tuple[Lane, Recorder, asyncio.Future[Any]]:
    locks: dict[tuple[str, str], asyncio.Lock] = {}
    lane = Lane(lambda ns, n: locks.setdefault((ns, n), asyncio.Lock()),
                (errors if errors is not None else []).append)
    rec = Recorder()
    task = asyncio.gather(*lane.writers(None, rec.status, rec.event))  # type: ignore[arg-type]
    return lane, rec, task


async def settle(lane: Lane, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while lane.pending():
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the last write's thread


async def test_writes_at_once_when_nothing_else_is_running() -> None:
    lane, rec, task = await started()
    lane.put(REF, obj("a"), {"n": 1}, ("Unsealed", "Secret a created", False))
    await settle(lane)
    assert rec.writes == [("status", ("a", 1)), ("event", ("a", "Unsealed"))]
    task.cancel()


async def test_held_back_while_secrets_are_written_then_newest_status_wins() -> None:
    lane, rec, task = await started()
    with lane.working():
        lane.put(REF, obj("a"), {"n": 1}, ("Unsealed", "created", False))
        lane.put(OTHER, obj("b"), {"n": 1})
        lane.put(REF, obj("a"), {"n": 2}, ("Unsealed", "updated", False))
        await asyncio.sleep(0.2)
        assert rec.writes == []  # nothing while the backlog is being worked on
    await settle(lane)
    statuses = [w for w in rec.writes if w[0] == "status"]
    assert sorted(statuses) == [("status", ("a", 2)), ("status", ("b", 1))]
    events = [w for w in rec.writes if w[0] == "event"]
    assert events == [("event", ("a", "Unsealed"))] * 2  # both kept, in order
    # an object's Events come after its status
    assert rec.writes.index(("status", ("a", 2))) < rec.writes.index(events[0])
    task.cancel()


async def test_a_retry_before_the_status_is_written_posts_its_warning_once() -> None:
    lane, rec, task = await started()
    warning = ("DecryptFailed", "no key could decrypt item password", True)
    with lane.working():
        lane.put(REF, obj("a"), {"n": 1}, warning)
        lane.put(REF, obj("a"), {"n": 1}, warning)  # the retry, its status not written yet
        lane.put(OTHER, obj("b"), {"n": 1}, ("Unsealed", "Secret b created", False))
        lane.put(OTHER, obj("b"), {"n": 2}, warning)
        lane.put(OTHER, obj("b"), {"n": 3}, ("Unsealed", "Secret b created", False))
    await settle(lane)
    events = [w for w in rec.writes if w[0] == "event"]
    assert events.count(("event", ("a", "DecryptFailed"))) == 1
    # not a set: a different Event in between keeps both of the same kind, in order
    assert [e for e in events if e[1][0] == "b"] == [
        ("event", ("b", "Unsealed")), ("event", ("b", "DecryptFailed")),
        ("event", ("b", "Unsealed"))]
    task.cancel()


async def test_a_never_ending_backlog_cannot_starve_statuses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealed_lane, "MAX_DEFER", 0.2)
    lane, rec, task = await started()
    with lane.working():
        lane.put(REF, obj("a"), {"n": 1})
        await asyncio.sleep(0.05)
        assert rec.writes == []
        await settle(lane)
        assert rec.writes == [("status", ("a", 1))]  # written while still busy
    task.cancel()


async def test_forget_drops_what_is_pending_for_a_deleted_object() -> None:
    lane, rec, task = await started()
    with lane.working():
        lane.put(REF, obj("a"), {"n": 1}, ("Unsealed", "created", False))
        lane.forget(REF)
        assert lane.pending() == 0
    await asyncio.sleep(0.1)
    assert rec.writes == []
    task.cancel()


async def test_nothing_to_write_queues_nothing() -> None:
    lane, _, task = await started()
    lane.put(REF, obj("a"), None, None)
    assert lane.pending() == 0
    task.cancel()


async def test_api_error_is_handed_back_and_the_event_not_posted() -> None:
    errors: list[Ref] = []
    lane, rec, task = await started(errors)
    rec.fail_status = KubeError("patch status: 500 boom")
    lane.put(REF, obj("a"), {"n": 1}, ("Unsealed", "created", False))
    await settle(lane)
    assert errors == [REF]
    assert rec.writes == []
    # a vanished object is not an error worth a retry
    rec.fail_status = KubeNotFound("gone")
    lane.put(OTHER, obj("b"), {"n": 1})
    await settle(lane)
    assert errors == [REF]
    task.cancel()


def test_an_event_that_cannot_be_posted_fails_nobody(caplog: Any) -> None:
    """The lane posts Events through ``Kube.post_event``, which never raises: a refused
    Event is one log line, not a failed reconcile or a stopped writer."""
    from secretsync.kube import Kube

    kube = Kube.__new__(Kube)

    def refuse(*_: Any, **__: Any) -> None:
        raise KubeError("create event: 403")

    kube.create_event = refuse  # type: ignore[method-assign]
    assert kube.post_event(obj("a"), reason="Unsealed", message="created") is False
    assert "Event Unsealed for ns/a not posted: create event: 403" in caplog.text


async def until(check: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_writers_work_on_different_objects_at_once() -> None:
    lane, rec, task = await started()
    rec.delay = 0.2
    for name in "abcd":
        lane.put(("secretsync.io/v1alpha1", "ns", name), obj(name), {"n": 1})
    await until(lambda: len(rec.writes) == 4)
    assert rec.most_in_flight == sealed_lane.WRITERS
    task.cancel()


async def test_a_newer_status_taken_while_the_older_is_written_lands_after_it() -> None:
    lane, rec, task = await started()
    rec.delay = 0.2
    lane.put(REF, obj("a"), {"n": 1})
    await until(lambda: rec.in_flight == 1)  # the first is being written
    lane.put(REF, obj("a"), {"n": 2})  # a new entry; another writer takes it
    await until(lambda: len(rec.writes) == 2)
    assert rec.writes == [("status", ("a", 1)), ("status", ("a", 2))]
    assert rec.most_in_flight == 1  # one object's writes never overlap
    task.cancel()
