"""Unseal throughput: the RSA ceiling, the key hint, threads, and the controller end to end.

Figures are ratios against baselines measured in the same run on the same machine:

1. ceiling: raw RSA-4096 OAEP decryptions/s with ``cryptography`` on every core (threads);
2. pure unseal (``KeyRegistry.decrypt``) with 12 keys: with the fingerprint hint vs without
   (items sealed to the oldest key, the worst case for newest-first), 1 thread vs all cores;
3. end to end (needs the sandbox; ``--no-cluster`` skips it): N SealedSecrets x 4 items
   created first, then the controller is started cold (as its ServiceAccount) and timed until
   every Secret exists -- with 1 key and with 12 keys registered. Reports items/s next to the
   ceiling (target >= 60 %) and the 12-key/1-key time ratio (target <= 1.1).

Usage: python bench/bench_unseal.py [--objects 1000] [--no-cluster]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from secretsync.crypto import pem
from secretsync.crypto.format import scope_label, seal_item
from secretsync.keys import KeyRegistry, SealingKey

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
ITEMS_PER_OBJECT = 4


def make_keys(n: int) -> list[SealingKey]:
    """n keys with distinct, increasing creation times (index 0 = oldest)."""
    import datetime as dt

    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    keys = []
    for i in range(n):
        k = pem.generate_private_key(4096)
        cert = pem.self_signed_certificate(k, now=base + dt.timedelta(days=30 * i))
        keys.append(SealingKey.from_private_key(k, cert))
    return keys


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f}/s"


def ceiling(key: SealingKey, n: int, rounds: int = 3) -> float:
    """Best of ``rounds``: the machine is shared, the ceiling is what it can do at best."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    cts = [key.public_key.encrypt(os.urandom(32), oaep) for _ in range(n)]
    best = 0.0
    with ThreadPoolExecutor(CORES) as pool:
        for _ in range(rounds):
            t = time.perf_counter()
            list(pool.map(lambda c: key.private_key.decrypt(c, oaep), cts))
            best = max(best, n / (time.perf_counter() - t))
    return best


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process and its reaped children, or of one of its threads (the
    main thread runs the event loop: the controller's own Python work, no RSA) (Linux /proc)."""
    stat = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def apiserver_pids(state_dir: Path,
                   names: tuple[bytes, ...] = (b"kube-apiserver", b"/etcd")) -> list[int]:
    """kube-apiserver and etcd (or other ``names``) of OUR sandbox (their command lines name
    its state directory): other engineers' sandboxes on this machine are not measured."""
    pids = []
    marker = str(state_dir).encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(names) and any(
                    marker in a for a in argv[1:]):
                pids.append(int(d.name))
    return pids


class Watcher(threading.Thread):
    """Counts distinct objects from a watch stream, with the time each count was reached.

    The observer must not compete with what it measures: polling a LIST of up to 1,000
    Secrets (their data included) four times a second cost the API server and this process
    several core-seconds of the same 2 cores, and added up to 0.25 s of poll granularity. A
    watch is sent each object once (the API server encodes an event once for all watchers).
    ``done(obj)`` says whether an object counts (e.g. its status says Synced)."""

    def __init__(self, kube: Any, path: str, selector: str, done: Any, target: int) -> None:
        super().__init__(daemon=True)
        self.kube, self.path, self.selector, self.done, self.target = (
            kube, path, selector, done, target)
        self.seen: set[str] = set()
        self.finished_at: float | None = None
        self.reached = threading.Event()
        listing = kube.request("GET", path, query={"labelSelector": selector, "limit": "1"})
        self.rv = listing["metadata"]["resourceVersion"]  # only what happens from now on

    def run(self) -> None:
        api_client = self.kube.api_client
        query = [("watch", "true"), ("resourceVersion", self.rv), ("timeoutSeconds", "900")]
        if self.selector:
            query.append(("labelSelector", self.selector))
        _, url, headers, _, _ = api_client.param_serialize(
            method="GET", resource_path=self.path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        resp = api_client.rest_client.pool_manager.request(
            "GET", url, headers=headers, preload_content=False, timeout=None)
        buf = b""
        try:
            for chunk in resp.stream(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") in ("ADDED", "MODIFIED") and self.done(obj):
                        self.seen.add(obj["metadata"]["name"])
                        if len(self.seen) >= self.target and self.finished_at is None:
                            self.finished_at = time.perf_counter()
                            self.reached.set()
                            return
        finally:
            resp.release_conn()
            self.reached.set()


def _synced(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return any(c.get("type") == "Synced" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def pure(keys: list[SealingKey], n: int) -> None:
    reg = KeyRegistry(keys)
    oldest = keys[0]
    label = scope_label("strict", "ns", "name")
    items = [seal_item(oldest.public_key, b"value-%d" % i, label) for i in range(n)]
    results: dict[str, float] = {}
    for hint in (oldest.fingerprint, None):
        for threads in (1, CORES):
            t = time.perf_counter()
            if threads == 1:
                for it in items:
                    reg.decrypt(it, label, hint)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda it, h=hint: reg.decrypt(it, label, h), items))
            dt_ = time.perf_counter() - t
            name = f"{'hint' if hint else 'no hint'}, {threads} thread(s)"
            results[name] = dt_
            print(f"  {len(keys)} keys, {name:22}: {rate(n, dt_)}")
    base = results["no hint, 1 thread(s)"]
    best = results[f"hint, {CORES} thread(s)"]
    print(f"  hint + {CORES} threads vs no hint + 1 thread: {base / best:.1f}x faster")


def cluster(keys: list[SealingKey], objects: int, ceiling_rate: float) -> None:
    from sandbox import launcher, paths
    from sandbox.demo import ControllerProcess, apply_crds, apply_docs, render_kustomization
    from sandbox.kube import write_kubeconfig
    from secretsync import api
    from secretsync.keys import secret_body_for_key
    from secretsync.kube import Kube
    from secretsync.sealing import seal_secret

    # Hold the sandbox's shared users lock (as pytest sessions do): nobody stops it under us.
    paths.DEV.mkdir(parents=True, exist_ok=True)
    users = open(paths.DEV / "users.lock", "w")  # held for the whole run
    fcntl.flock(users, fcntl.LOCK_SH)
    sb = launcher.running() or launcher.up()
    kube = Kube.from_config(str(sb.kubeconfig))
    apply_crds(kube)
    times: dict[int, float] = {}
    for nkeys in (1, len(keys)):
        tag = uuid.uuid4().hex[:6]
        ctl_ns, ns = f"bench-ctl-{tag}", f"bench-{tag}"
        docs = render_kustomization(namespace=ctl_ns, suffix=f"-{tag}")
        apply_docs(kube, docs, kinds={"Namespace", "ServiceAccount", "ClusterRole",
                                      "ClusterRoleBinding", "Role", "RoleBinding"})
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        used = keys[-nkeys:]  # 12 keys: seal to the oldest; 1 key: that one
        for k in used:
            kube.create_secret(ctl_ns, secret_body_for_key(k, namespace=ctl_ns))
        sealer = used[0]
        t = time.perf_counter()
        for i in range(objects):
            secret = {"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": f"s{i}", "namespace": ns},
                      "stringData": {f"k{j}": f"value-{i}-{j}" for j in range(ITEMS_PER_OBJECT)}}
            doc = seal_secret(secret, sealer.public_key, sealer.fingerprint)
            kube.create_custom(api.GROUP, api.VERSION, api.PLURAL_SEALED, ns, doc)
        print(f"  created {objects} SealedSecrets in {time.perf_counter() - t:.1f}s")
        # The ceiling again, right before this run: the machine is shared and its load
        # changes; the best figure seen so far is the (conservative) reference.
        again = ceiling(keys[0], 400)
        ceiling_rate = max(ceiling_rate, again)
        print(f"  RSA ceiling re-measured: {again:.0f}/s (reference: best seen, "
              f"{ceiling_rate:.0f}/s)")
        token = kube.request_token(ctl_ns, "secretsync-controller")
        kc = write_kubeconfig(Path(tempfile.mkdtemp()) / "kc", sb.server, sb.ca_file,
                              token=token, user="ctl", namespace=ctl_ns)
        ctl = ControllerProcess(kc, controller_namespace=ctl_ns, namespace=ns,
                                extra=("--log-level", "WARNING", "--no-leader-elect"))
        secrets_seen = Watcher(kube, f"/api/v1/namespaces/{ns}/secrets",
                               f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY_VALUE}",
                               lambda obj: True, objects)
        statuses_seen = Watcher(kube, f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{ns}/"
                                f"{api.PLURAL_SEALED}", "", _synced, objects)
        secrets_seen.start()
        statuses_seen.start()
        servers = apiserver_pids(paths.STATE)
        server_cpu0 = sum(cpu_seconds(p) for p in servers)
        # the garbage collector watches every Secret (ownerReferences): same cores
        kcm = apiserver_pids(paths.STATE, (b"kube-controller-manager",))
        kcm_cpu0 = sum(cpu_seconds(p) for p in kcm)
        bench_cpu0 = time.process_time()
        t0 = time.perf_counter()
        ctl.start()
        try:
            ctl.wait_ready(120)
            t_ready = time.perf_counter() - t0
            if not secrets_seen.reached.wait(900) or secrets_seen.finished_at is None:
                raise RuntimeError(f"only {len(secrets_seen.seen)}/{objects} Secrets seen")
            total = secrets_seen.finished_at - t0
            assert ctl.popen is not None
            ctl_cpu = cpu_seconds(ctl.popen.pid)
            loop_cpu = cpu_seconds(ctl.popen.pid, ctl.popen.pid)
            server_cpu = sum(cpu_seconds(p) for p in servers) - server_cpu0
            kcm_cpu = sum(cpu_seconds(p) for p in kcm) - kcm_cpu0
            bench_cpu = time.process_time() - bench_cpu0
            if not statuses_seen.reached.wait(300) or statuses_seen.finished_at is None:
                raise RuntimeError(f"only {len(statuses_seen.seen)}/{objects} statuses Synced")
            t_status = statuses_seen.finished_at - t0
        finally:
            ctl.stop()
        times[nkeys] = total
        items = objects * ITEMS_PER_OBJECT
        print(f"  {nkeys:2d} key(s): cold start -> {objects} Secrets synced in {total:6.1f}s "
              f"(ready after {t_ready:.1f}s): {items / total:6.0f} items/s = "
              f"{100 * items / total / ceiling_rate:4.1f}% of the RSA ceiling; "
              f"after ready: {items / (total - t_ready):6.0f} items/s; "
              f"all statuses Synced after {t_status:.1f}s")
        print(f"           CPU: controller {ctl_cpu:.1f}s (event loop thread {loop_cpu:.1f}s), "
              f"kube-apiserver+etcd {server_cpu:.1f}s, kube-controller-manager "
              f"{kcm_cpu:.1f}s "
              f"of {CORES * total:.1f} core-seconds; RSA alone needs "
              f"{items / ceiling_rate * CORES:.1f} core-seconds; this bench process "
              f"{bench_cpu:.1f}s")
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
        for d in docs:
            if d["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                kube.delete_object(d)
    print(f"  12 keys / 1 key time ratio: {times[len(keys)] / times[1]:.2f} (target <= 1.1)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--items", type=int, default=400, help="items for the pure benchmarks")
    ap.add_argument("--keys", type=int, default=12)
    ap.add_argument("--no-cluster", action="store_true")
    args = ap.parse_args()
    print(f"bench_unseal: {CORES} core(s)")
    t = time.perf_counter()
    keys = make_keys(args.keys)
    print(f"generated {args.keys} RSA-4096 keys in {time.perf_counter() - t:.1f}s")
    ceil = ceiling(keys[0], args.items)
    print(f"RSA-4096 OAEP decrypt ceiling ({CORES} threads): {ceil:.0f}/s")
    print("pure unseal (KeyRegistry.decrypt):")
    pure(keys, args.items)
    if not args.no_cluster:
        print(f"controller end to end ({args.objects} SealedSecrets x {ITEMS_PER_OBJECT} items):")
        cluster(keys, args.objects, ceil)
    return 0


if __name__ == "__main__":
    sys.exit(main())
