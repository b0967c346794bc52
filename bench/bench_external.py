"""ExternalSecrets at scale: N objects over K distinct Vault keys, against the sandbox.

The controller runs as a subprocess as its ServiceAccount (deploy/ RBAC), with an AppRole
SecretStore (so logins are real and countable). Figures, all from the same run:

1. cold start: N ExternalSecrets created first, then the controller is started; time until
   every one is Ready, with backend reads and logins during it;
2. one steady-state refresh cycle (the second interval after cold start) with unchanged
   data (``--interval`` seconds, every object refreshes once): backend reads (target: K),
   logins (target: <= 1 per store), Kubernetes API writes (target: 0), controller CPU
   seconds and summed sync time;
3. the same cycle with the single-flight disabled (SECRETSYNC_FETCH_WINDOW=-1, a second
   controller): the naive reads per cycle — what a per-object fetch costs (ESO's model);
4. controller RSS at the end.

Usage: python bench/bench_external.py [--objects 1000] [--keys 100] [--interval 60]
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hvac
from kubernetes import client, config

from sandbox import launcher, paths
from sandbox.kube import write_kubeconfig
from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import (
    CONTROLLER_NS,
    CONTROLLER_SA,
    Controller,
    install_rbac,
)


def token_kubeconfig(sb: Any, core: Any, path: Path) -> Path:
    req = core.create_namespaced_service_account_token(
        CONTROLLER_SA, CONTROLLER_NS, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)))
    return write_kubeconfig(path, sb.server, Path(sb.ca_file), token=req.status.token,
                            user=CONTROLLER_SA, namespace=CONTROLLER_NS)


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def counters(ctl: Controller) -> dict[str, float]:
    return {
        "reads": ctl.metric("secretsync_backend_calls_total", backend="vault", operation="get"),
        "logins": ctl.metric("secretsync_backend_calls_total", backend="vault",
                             operation="login"),
        "writes": ctl.metric("secretsync_external_api_writes_total"),
        "syncs": ctl.metric("secretsync_external_syncs_total"),
        "sync_s": ctl.metric("secretsync_external_sync_duration_seconds_sum"),
    }


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def measure_cycle(ctl: Controller, interval: float) -> dict[str, float]:
    assert ctl.proc is not None
    c0, cpu0 = counters(ctl), proc_stats(ctl.proc.pid)[0]
    time.sleep(interval)
    c1, cpu1 = counters(ctl), proc_stats(ctl.proc.pid)[0]
    return {**delta(c0, c1), "cpu_s": cpu1 - cpu0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--interval", type=int, default=60, help="refreshInterval in seconds")
    args = ap.parse_args()
    n, k, interval = args.objects, args.keys, args.interval

    # Hold the sandbox's users lock (as pytest sessions do) so nobody stops it under us.
    paths.DEV.mkdir(parents=True, exist_ok=True)
    users = open(paths.DEV / "users.lock", "w")
    fcntl.flock(users, fcntl.LOCK_SH)
    sb = launcher.running() or launcher.up()
    api_client = config.new_client_from_config(config_file=str(sb.kubeconfig))
    core = client.CoreV1Api(api_client)
    install_rbac(api_client)
    from tests.conftest import apply_crds

    apply_crds(api_client, sorted((Path(__file__).resolve().parent.parent / "crds").glob(
        "*.yaml")))
    kube = Kube.from_config(str(sb.kubeconfig))
    vault = hvac.Client(url=sb.env["VAULT_ADDR"], token=sb.env["VAULT_TOKEN"])
    tag = uuid.uuid4().hex[:6]
    ns, mount, approle = f"bench-es-{tag}", f"bench-{tag}", f"approle-bench-{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-external-"))
    ctls: list[Controller] = []
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    vault.sys.enable_auth_method("approle", path=approle)
    try:
        vault.sys.create_or_update_policy(f"bench-{tag}",
                                          f'path "{mount}/*" {{ capabilities = ["read"] }}')
        vault.auth.approle.create_or_update_approle("bench", token_policies=[f"bench-{tag}"],
                                                    token_ttl="1h", mount_point=approle)
        role_id = vault.auth.approle.read_role_id("bench", mount_point=approle)["data"][
            "role_id"]
        secret_id = vault.auth.approle.generate_secret_id("bench", mount_point=approle)[
            "data"]["secret_id"]
        for i in range(k):
            vault.secrets.kv.v2.create_or_update_secret(f"key{i}", {"v": f"value-{i}"},
                                                        mount_point=mount)
        kube.create_secret(ns, {"metadata": {"name": "approle"}, "data": {
            "secret-id": base64.b64encode(secret_id.encode()).decode()}})
        kube.create_custom(api.GROUP, api.VERSION, api.PLURAL_STORE, ns, {
            "apiVersion": api.API_VERSION, "kind": api.KIND_STORE,
            "metadata": {"name": "vault"},
            "spec": {"provider": {"vault": {
                "server": sb.env["VAULT_ADDR"], "path": mount,
                "auth": {"appRole": {"path": approle, "roleId": role_id,
                                     "secretRef": {"name": "approle", "key": "secret-id"}}}}}}})

        def create(i: int) -> None:
            kube.create_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, ns, {
                "apiVersion": api.API_VERSION, "kind": api.KIND_EXTERNAL,
                "metadata": {"name": f"es-{i}"},
                "spec": {"secretStoreRef": {"name": "vault"}, "refreshInterval": f"{interval}s",
                         "data": [{"secretKey": "v", "remoteRef": {"key": f"key{i % k}",
                                                                   "property": "v"}}]}})

        t = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n)))
        print(f"created {n} ExternalSecrets over {k} keys in {time.monotonic() - t:.1f}s")

        kubeconfig = token_kubeconfig(sb, core, tmp / "ctl.kubeconfig")
        ctl = Controller(kubeconfig, ns, tmp / "controller.log",
                         extra_args=("--log-level", "INFO"))
        ctls.append(ctl)
        t0 = time.monotonic()
        ctl.start(timeout=120)

        def ready_count() -> int:
            items = kube.list_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, ns)
            return sum(1 for o in items for c in (o.get("status") or {}).get("conditions") or []
                       if c.get("type") == "Ready" and c.get("status") == "True")

        while ready_count() < n:
            if time.monotonic() - t0 > 600:
                print(f"FAILED: only {ready_count()}/{n} ready after 600 s\n{ctl.tail()}")
                return 1
            time.sleep(1)
        cold = time.monotonic() - t0
        c_cold = counters(ctl)
        print(f"cold start to all {n} synced: {cold:.1f}s ({n / cold:.0f} objects/s), "
              f"{c_cold['syncs']:.0f} syncs, backend reads {c_cold['reads']:.0f}, "
              f"logins {c_cold['logins']:.0f}, API writes {c_cold['writes']:.0f}")
        # Skip the first interval: values fetched at cold start may still be reused from the
        # single-flight cache then; the second interval is the steady state.
        time.sleep(interval)
        cyc = measure_cycle(ctl, interval)
        assert ctl.proc is not None
        _, rss = proc_stats(ctl.proc.pid)
        print(f"refresh cycle ({interval}s, unchanged data): {cyc['syncs']:.0f} syncs, "
              f"backend reads {cyc['reads']:.0f} (target {k}), logins {cyc['logins']:.0f} "
              f"(target <= 1), API writes {cyc['writes']:.0f} (target 0), "
              f"controller CPU {cyc['cpu_s']:.2f}s, summed sync time {cyc['sync_s']:.2f}s")
        ctl.stop()

        # the same controller (same name: same data-hash key Secret) restarted with the
        # single-flight off; under another name its hash key would differ, and every Secret's
        # hash annotation would be rewritten once (writes that are the rename's, not the mode's)
        naive = Controller(kubeconfig, ns, tmp / "naive.log", extra_args=("--log-level", "INFO"),
                           env={"SECRETSYNC_FETCH_WINDOW": "-1"}, name=ctl.name)
        ctls.append(naive)
        naive.start(timeout=120)
        time.sleep(5)
        base = measure_cycle(naive, interval)
        ratio = base["reads"] / cyc["reads"] if cyc["reads"] else float("inf")
        print(f"naive baseline (single-flight off), same cycle: {base['syncs']:.0f} syncs, "
              f"backend reads {base['reads']:.0f}, API writes {base['writes']:.0f}, "
              f"CPU {base['cpu_s']:.2f}s")
        print(f"single-flight: {cyc['reads']:.0f} vs {base['reads']:.0f} reads per cycle "
              f"= {ratio:.1f}x fewer backend calls")
        print(f"controller RSS after the run: {rss:.0f} MiB ({n} ExternalSecrets)")
        return 0
    finally:
        for c in ctls:
            c.stop()
        core.delete_namespace(ns)
        vault.sys.disable_secrets_engine(mount)
        vault.sys.disable_auth_method(approle)


if __name__ == "__main__":
    raise SystemExit(main())
