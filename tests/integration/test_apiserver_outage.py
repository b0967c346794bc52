"""The API server goes away and comes back: the controller rides it out.

A control-plane upgrade or an etcd hiccup takes the API server away for a while -- here for a
minute. The controller must neither crash nor exit, and afterwards must pick
up what happened meanwhile by itself: a SealedSecret created after the restart is unsealed, a
managed Secret deleted after it is restored (the Secret watch reconnected), Secrets deleted
during the outage -- which no watch reports -- are restored by the resync, the Secret
written before the outage is not written again (no churn), and an ExternalSecret brings a
value rotated in Vault after the outage (its refresh timer survived). The sandbox's real
kube-apiserver is stopped and started again (same etcd, same certificates and ports).

The controller under test runs without leader election: a leader that cannot renew its Lease
steps down and exits on purpose (two leaders must never overlap; its pod restarts). A second,
leader-elected controller of another namespace checks exactly that: it exits 1 with one log
line and no traceback, and started again it becomes the leader.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from sandbox import kube as sandbox_kube
from sandbox import proc
from sandbox.demo import ControllerProcess
from secretsync.kube import Kube
from tests.integration._controller import wait_for
from tests.integration._external import MARK, sandbox_world
from tests.integration.test_sealed_controller import Start, create, metric, seal

pytestmark = pytest.mark.integration

# Longer than kopf's retry budget for one request (1+1+2+3+5+8+13+21 = 54 s): its watch
# requests then escalate and start over (they do not end the operator, which this shows).
OUTAGE = sum(kopf.OperatorSettings().networking.error_backoffs) + 6.0


@pytest.fixture
def restart_apiserver(sandbox: Any, kube: Kube) -> Iterator[Any]:
    """``restart()``: stop the sandbox's kube-apiserver, wait OUTAGE s, start it again and
    wait until it is ready -- and until the controller-manager works again (its informers
    back off up to ~60 s, 30 s jittered, after an outage; later tests need, e.g., each new
    namespace's ``default`` ServiceAccount). At teardown it is running whatever happened."""

    def start() -> None:
        started = sandbox_kube.start_apiserver(sandbox.cfg)
        proc.wait_until("kube-apiserver", started,
                        lambda: sandbox_kube.apiserver_healthy(sandbox.cfg), 60)
        probe = f"outage-probe-{uuid.uuid4().hex[:6]}"
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe}})
        try:
            wait_for(lambda: kube.request("GET", f"/api/v1/namespaces/{probe}/serviceaccounts",
                                          query={"fieldSelector": "metadata.name=default"}
                                          ).get("items"),
                     180, "the controller-manager to work again after the restart")
        finally:
            kube.request("DELETE", f"/api/v1/namespaces/{probe}")

    def restart(during: Callable[[], None] | None = None) -> None:
        """``during`` runs while the API server is away (e.g. writes straight to etcd)."""
        current = [p for p in proc.recorded() if p.name == "kube-apiserver"]
        assert current and current[0].alive(), "the sandbox's kube-apiserver is not running"
        proc.stop(current)
        began = time.monotonic()
        if during is not None:
            during()
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))
        start()

    yield restart
    if not any(p.name == "kube-apiserver" and p.alive() for p in proc.recorded()):
        start()


def delete_in_etcd(sandbox: Any, namespace: str, name: str) -> None:
    """Delete a Secret behind the API server's back -- as another API server replica would
    while ours is away: no watch of ours ever reports it."""
    key = base64.b64encode(f"/registry/secrets/{namespace}/{name}".encode()).decode()
    req = urllib.request.Request(f"{sandbox.cfg['etcd_url']}/v3/kv/deleterange",
                                 data=json.dumps({"key": key}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.load(resp).get("deleted") == "1", f"Secret {namespace}/{name} not in etcd"


@pytest.fixture
def leader_namespace(kube: Kube) -> Iterator[str]:
    """A second namespace for the leader-elected controller (one controller per namespace)."""
    name = f"t-outage-leader-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")


def test_controller_rides_out_an_apiserver_restart(
    kube: Kube, namespace: str, start_controller: Start,
    restart_apiserver: Any, sandbox: Any, vault_mount: str, tmp_path: Path,
    leader_namespace: str, ctl_ns: str, sa_kubeconfig: Path,
) -> None:
    # an ExternalSecret refreshed every second from the sandbox's OpenBao, beside the sealed
    world = sandbox_world(sandbox, kube, namespace, vault_mount, tmp_path)
    world.apply_store()
    world.put("db", {"password": f"v1-{MARK}"})
    world.apply_es("db", {"refreshInterval": "1s", "data": [
        {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]})
    world.put("steady", {"token": f"s1-{MARK}"})  # never rotated: no refresh rewrites it
    world.apply_es("steady", {"refreshInterval": "1h", "data": [
        {"secretKey": "token", "remoteRef": {"key": "steady", "property": "token"}}]})
    ctl = start_controller(("--no-leader-elect", "--resync-interval", "5"))
    # beside it, a leader-elected controller (the deploy/ default) of its own namespace
    leader_name = f"outage-{uuid.uuid4().hex[:6]}"

    def leader(n: int) -> ControllerProcess:
        return ControllerProcess(
            sa_kubeconfig, controller_namespace=ctl_ns, namespace=leader_namespace,
            log_path=tmp_path / f"leader-{n}.log", extra=("--controller-name", leader_name),
        ).start()

    first_leader = leader(0)
    first_leader.wait_ready(60)
    create(kube, seal("before", namespace))
    before = wait_for(lambda: kube.get_secret(namespace, "before"), 30, "Secret before")
    world.wait_data("db", {"password": f"v1-{MARK}".encode()})
    create(kube, seal("unseen", namespace))
    wait_for(lambda: kube.get_secret(namespace, "unseen"), 30, "Secret unseen")
    world.wait_data("steady", {"token": f"s1-{MARK}".encode()})

    # two managed Secrets deleted while our API server is away: the watches list again
    # afterwards and never see a DELETED event -- the resync (every 5 s here) restores them
    restart_apiserver(during=lambda: [delete_in_etcd(sandbox, namespace, n)
                                      for n in ("unseen", "steady")])
    wait_for(lambda: kube.get_secret(namespace, "unseen"), 60,
             "the SealedSecret's Secret deleted during the outage to be restored")
    world.wait_data("steady", {"token": f"s1-{MARK}".encode()}, timeout=60)
    log = ctl.log()
    assert "unseen is gone or changed (resync); restoring it" in log, log[-3000:]
    assert f"ExternalSecret {namespace}/steady: target Secret deleted; repairing" in log
    assert metric(ctl, "secretsync_resync_repairs_total") >= 2

    # rotated in the backend after the outage: the refresh timers still run
    world.put("db", {"password": f"v2-{MARK}"})
    world.wait_data("db", {"password": f"v2-{MARK}".encode()}, timeout=60)
    create(kube, seal("after", namespace))
    wait_for(lambda: kube.get_secret(namespace, "after"), 60,
             "a SealedSecret created after the restart to be unsealed")
    assert ctl.alive(), ctl.log()[-3000:]
    assert ctl.ready_state() == "ready"
    # no churn: the Secret from before the outage was not written again
    assert kube.get_secret(namespace, "before")["metadata"]["resourceVersion"] == (  # type: ignore[index]
        before["metadata"]["resourceVersion"])

    kube.delete_secret(namespace, "before")  # the Secret watch must be back
    wait_for(lambda: kube.get_secret(namespace, "before"), 60,
             "the deleted Secret to be restored after the restart")
    assert ctl.alive(), ctl.log()[-3000:]
    world.wait_ready("db")
    assert MARK not in ctl.log()

    # The leader could not renew its Lease: it stepped down and exited 1 (its pod restarts),
    # in one log line, no traceback; started again, it takes the Lease and is ready.
    assert first_leader.popen is not None and first_leader.popen.poll() == 1, (
        first_leader.log()[-3000:])
    log = first_leader.log()
    assert "stepping down" in log and "Traceback" not in log, log[-3000:]
    second_leader = leader(1)
    try:
        second_leader.wait_ready(60)
    finally:
        second_leader.stop()
