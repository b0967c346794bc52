"""The cold start against the sandbox: SealedSecrets that exist before the controller starts
are reconciled by the initial sync, before kopf watches (``secretsync.controller.sealed.start``).

What must hold: every Secret written once and every status once, one Event per object (kopf's
own listing of the same objects afterwards writes nothing); a restart writes nothing at all;
and a Secret deleted while the initial sync runs -- when no watch sees it -- is restored.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import wait_for
from tests.integration.test_sealed_controller import G, P, Start, V, condition, create, seal
from tests.keypairs import keypair

pytestmark = pytest.mark.integration

MANAGED = api.MANAGED_SELECTOR


class Writes(threading.Thread):
    """Counts watch events per object name (``(type, name) -> n``; existing objects come
    first as ADDED); ``on_event`` may act on them (the test's deletion)."""

    def __init__(self, k8s: Any, ns: str, kind: str, selector: str = "",
                 on_event: Any = None) -> None:
        super().__init__(daemon=True)
        from kubernetes import watch

        self.k8s, self.ns, self.kind, self.selector, self.on_event = (
            k8s, ns, kind, selector, on_event)
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.watch = watch.Watch()
        self.stopped = False
        self.error: Exception | None = None

    def run(self) -> None:
        from kubernetes import client

        def lister(**kw: Any) -> Any:
            if self.kind == "secrets":
                return client.CoreV1Api(self.k8s).list_namespaced_secret(
                    self.ns, label_selector=self.selector, **kw)
            return client.CustomObjectsApi(self.k8s).list_namespaced_custom_object(
                G, V, self.ns, P, **kw)

        try:
            for event in self.watch.stream(lister, timeout_seconds=300):
                obj = event["object"]
                meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
                name = meta["name"]
                self.counts[(event["type"], name)] += 1
                if self.on_event is not None:
                    self.on_event(event["type"], name)
        except Exception as exc:  # checked by the test: the counts depend on the watch
            if not self.stopped:
                self.error = exc

    def started(self) -> Writes:
        self.start()
        return self

    def stop(self) -> None:
        """Stop; the watch must have run without error until now (the counts depend on it)."""
        self.stopped = True
        self.watch.stop()
        assert self.error is None, f"watch of {self.kind} failed: {self.error!r}"


def events_by(kube: Kube, ns: str) -> collections.Counter[tuple[str, str]]:
    """(object name, reason) -> Events (counting kubectl-style aggregated repeats)."""
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in kube.list_events(ns):
        out[((e.get("involvedObject") or {}).get("name", ""), e.get("reason", ""))] += int(
            e.get("count") or 1)
    return out


def test_cold_start_writes_each_secret_status_and_event_once_and_restart_nothing(
        kube: Kube, k8s: Any, namespace: str, start_controller: Start,
) -> None:
    n = 200  # enough that kopf lists some objects before their statuses are written: with
    # no skip of the version the initial sync reconciled, "bad" posts its warning twice
    for i in range(n):
        create(kube, seal(f"s{i}", namespace))
    create(kube, seal("bad", namespace, key=keypair(1).key))  # no such key: DecryptFailed
    sealed_writes = Writes(k8s, namespace, "sealed").started()
    secret_writes = Writes(k8s, namespace, "secrets", MANAGED).started()
    time.sleep(0.5)  # both watches established before the controller starts
    ctl = start_controller()
    try:
        wait_for(lambda: all((condition(kube, namespace, f"s{i}") or {}).get("status") == "True"
                             for i in range(n)), 60, "every object Synced")
        wait_for(lambda: (condition(kube, namespace, "bad") or {}).get("reason")
                 == "DecryptFailed", 30, "bad: DecryptFailed")
        time.sleep(4)  # kopf's own listing of the same objects, the lane, a failed retry
        assert f"initial sync: {n + 1} SealedSecrets" in ctl.log()
        for i in range(n):
            assert secret_writes.counts[("ADDED", f"s{i}")] == 1
            assert secret_writes.counts[("MODIFIED", f"s{i}")] == 0, f"s{i} written twice"
            assert sealed_writes.counts[("MODIFIED", f"s{i}")] == 1, f"s{i} status writes"
        assert sealed_writes.counts[("MODIFIED", "bad")] == 1
        events = events_by(kube, namespace)
        assert all(events[(f"s{i}", "Unsealed")] == 1 for i in range(n)), events
        assert events[("bad", "DecryptFailed")] == 1, events
        before = (dict(sealed_writes.counts), dict(secret_writes.counts), events)
        ctl.stop()

        ctl = start_controller()  # a restart: everything is in sync already
        time.sleep(4)
        assert f"initial sync: {n + 1} SealedSecrets" in ctl.log()
        assert (dict(sealed_writes.counts), dict(secret_writes.counts),
                events_by(kube, namespace)) == before, "a restart wrote something"
    finally:
        sealed_writes.stop()
        secret_writes.stop()


def test_secret_deleted_during_the_initial_sync_is_restored(
        kube: Kube, k8s: Any, namespace: str, start_controller: Start,
) -> None:
    n = 300  # ~1 s of RSA on two cores: the first Secret is written long before kopf watches
    for i in range(n):
        create(kube, seal(f"s{i}", namespace))
    deleted = threading.Event()

    def delete_first(kind: str, name: str) -> None:
        if kind == "ADDED" and name == "s0" and not deleted.is_set():
            deleted.set()
            kube.delete_secret(namespace, "s0")

    writes = Writes(k8s, namespace, "secrets", MANAGED, on_event=delete_first).started()
    time.sleep(0.5)
    try:
        ctl = start_controller(wait=False)
        ctl.wait_ready(120)
        assert deleted.is_set()
        s0 = wait_for(lambda: kube.get_secret(namespace, "s0"), 30, "s0 restored")
        assert s0["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE
        assert "changed during the initial sync; restoring it" in ctl.log()
        assert writes.counts[("ADDED", "s0")] == 2 and writes.counts[("DELETED", "s0")] == 1
    finally:
        writes.stop()


def test_sigterm_during_the_initial_sync_exits_cleanly(
        kube: Kube, namespace: str, start_controller: Start,
) -> None:
    n = 300
    for i in range(n):
        create(kube, seal(f"s{i}", namespace))
    ctl = start_controller(wait=False)
    wait_for(lambda: kube.list_secrets(namespace, MANAGED), 60, "the first Secret written")
    started = time.monotonic()
    assert ctl.stop() == 0
    assert time.monotonic() - started < 5
    log = ctl.log()
    assert "stopped during the initial sync" in log, log[-2000:]
    assert "Traceback" not in log and "controller ready" not in log


def test_secret_deleted_while_kopf_starts_is_restored_by_the_first_resync(
        kube: Kube, k8s: Any, namespace: str, start_controller: Start,
) -> None:
    """Between the initial sync's last LIST of Secrets and kopf's first one no watch runs and
    no LIST follows: a Secret deleted then is seen by nobody but the resync ~5 s after kopf
    starts. Secrets are deleted every ~20 ms from the first one until kopf watches; every
    one must come back, some of them by the resync. Later resyncs write nothing."""
    n = 150
    for i in range(n):
        create(kube, seal(f"s{i}", namespace))
    present: set[str] = set()

    def track(kind: str, name: str) -> None:
        (present.add if kind in ("ADDED", "MODIFIED") else present.discard)(name)

    writes = Writes(k8s, namespace, "secrets", MANAGED, on_event=track).started()
    time.sleep(0.5)
    stop = threading.Event()
    deleted: list[str] = []

    def delete_some() -> None:
        i = 0
        while not stop.is_set():
            names = sorted(present)
            if names:
                i += 7
                if kube.delete_secret(namespace, names[i % len(names)]):
                    deleted.append(names[i % len(names)])
            time.sleep(0.02)

    deleter = threading.Thread(target=delete_some, daemon=True)
    try:
        deleter.start()
        ctl = start_controller(("--resync-interval", "2", "--log-level", "DEBUG"), wait=False)
        ctl.wait_ready(120)
        time.sleep(1.5)  # kopf's watches start (and list) after it reports ready
        stop.set()
        deleter.join()
        assert len(deleted) > 20
        wait_for(lambda: len(kube.list_secrets(namespace, MANAGED)) == n, 30,
                 "every deleted Secret restored")
        wait_for(lambda: "(resync); restoring it" in ctl.log(), 10,
                 "a Secret deleted in the hand-off restored by the resync")
        time.sleep(1)
        before = dict(writes.counts)
        runs = ctl.log().count("to restore")
        time.sleep(5)  # two more resyncs, all in sync: not a single write
        assert ctl.log().count("to restore") >= runs + 2
        assert dict(writes.counts) == before, "a resync wrote although all was in sync"
    finally:
        stop.set()
        writes.stop()


def test_managed_secrets_are_listed_in_pages(
        kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resync's (and the start's) LIST of managed Secrets comes in pages: in a large
    cluster no single answer holds every Secret with its data."""
    from secretsync.controller import resync

    for i in range(5):
        kube.create_secret(namespace, {"metadata": {
            "name": f"m{i}", "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}},
            "data": {"k": "dg=="}})
    kube.create_secret(namespace, {"metadata": {"name": "not-ours"}, "data": {"k": "dg=="}})
    pages: list[dict[str, str]] = []
    request = kube.request

    def counted(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "GET" and path.endswith("/secrets"):
            pages.append(dict(kw.get("query") or {}))
        return request(method, path, body, **kw)

    monkeypatch.setattr(kube, "request", counted)
    monkeypatch.setattr(resync, "PAGE_SIZE", 2)
    listed = resync.list_managed(kube, namespace)
    assert sorted(listed) == [(namespace, f"m{i}") for i in range(5)]
    assert [p["limit"] for p in pages] == ["2", "2", "2"]
    assert not pages[0].get("continue") and pages[1]["continue"] and pages[2]["continue"]
