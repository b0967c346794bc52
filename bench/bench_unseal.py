"""Unseal throughput: the RSA ceiling, the key hint, threads, and the controller end to end.

Figures are ratios against baselines measured in the same run on the same machine:

1. ceiling: raw RSA-4096 OAEP decryptions/s with ``cryptography`` on every core (threads);
2. pure unseal (``KeyRegistry.decrypt``) with 12 keys: with the fingerprint hint vs without
   (items sealed to the oldest key, the worst case for newest-first), 1 thread vs all cores;
3. end to end (needs the sandbox; ``--no-cluster`` skips it): N SealedSecrets x 4 items
   created first, then the controller is started cold (as its ServiceAccount) and timed until
   every Secret exists -- with 1 key and with 12 keys registered. Reports items/s next to the
   ceiling measured right before and right after that cold start (the better of the two;
   target >= 60 %), next to the best ceiling of the whole run (conservative: this VM's speed
   drifts within minutes), and the 12-key/1-key time ratio (target <= 1.1).

Each end-to-end figure is the median of ``--runs`` cold starts. Last, the API server's own CPU
per write (Secret, status patch, Event) is measured, and with it the best time a controller
that cost nothing could reach on these cores: the API server shares them here.

``--dedicated-core`` adds what a cluster would show, where the API server has cores of its
own: the controller pinned alone to one core, against the RSA ceiling of that core.

Usage: python bench/bench_unseal.py [--objects 1000] [--runs 3] [--dedicated-core]
       [--no-cluster]
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
    """n keys with distinct, increasing creation times (index 0 = oldest), the newest a day
    old: a controller starting with them has no renewal due. (Keys dated 2024 made every cold
    start generate a new RSA-4096 key inside the timed window -- 0.3-1 s of one core, and
    readiness waited for it -- which no real restart with a current key does.)"""
    import datetime as dt

    newest = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    keys = []
    for i in range(n):
        k = pem.generate_private_key(4096)
        cert = pem.self_signed_certificate(k, now=newest - dt.timedelta(days=30 * (n - 1 - i)))
        keys.append(SealingKey.from_private_key(k, cert))
    return keys


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f}/s"


def ceiling(key: SealingKey, n: int, rounds: int = 3, cores: set[int] | None = None) -> float:
    """Best of ``rounds``: the machine is shared, the ceiling is what it can do at best. One
    thread per core, on every core, or pinned to ``cores``."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    cts = [key.public_key.encrypt(os.urandom(32), oaep) for _ in range(n)]
    best = 0.0
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None  # each pool thread
    with ThreadPoolExecutor(len(cores) if cores else CORES, initializer=pin) as pool:
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
        self.first_at: float | None = None
        self.catch_ups = 0  # LISTs after a stalled watch (their counts are upper bounds)
        self.reached = threading.Event()
        listing = kube.request("GET", path, query={"labelSelector": selector, "limit": "1"})
        self.rv = listing["metadata"]["resourceVersion"]  # only what happens from now on

    def run(self) -> None:
        try:
            while not self._watch():
                self._catch_up()  # a stalled or ended watch: LIST, then watch again
        finally:
            self.reached.set()

    def _count(self, obj: dict[str, Any]) -> bool:
        """Count ``obj`` if done; True once the target is reached."""
        if self.done(obj):
            self.seen.add(obj["metadata"]["name"])
            if self.first_at is None:
                self.first_at = time.perf_counter()
            if len(self.seen) >= self.target and self.finished_at is None:
                self.finished_at = time.perf_counter()
        return self.finished_at is not None

    def _catch_up(self) -> None:
        listing = self.kube.request("GET", self.path, query={"labelSelector": self.selector})
        self.catch_ups += 1
        for obj in listing.get("items") or []:
            self._count(obj)
        self.rv = listing["metadata"]["resourceVersion"]

    def _watch(self) -> bool:
        """Follow the watch from ``self.rv``; True when the target was reached, False when the
        stream ended, failed or stayed silent for 10 s (the caller then catches up)."""
        import urllib3

        api_client = self.kube.api_client
        query = [("watch", "true"), ("resourceVersion", self.rv), ("timeoutSeconds", "900"),
                 ("allowWatchBookmarks", "true")]
        if self.selector:
            query.append(("labelSelector", self.selector))
        _, url, headers, _, _ = api_client.param_serialize(
            method="GET", resource_path=self.path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        resp = api_client.rest_client.pool_manager.request(
            "GET", url, headers=headers, preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=10))
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
                    if event.get("type") == "ERROR":
                        return False
                    self.rv = (obj.get("metadata") or {}).get("resourceVersion", self.rv)
                    if event.get("type") in ("ADDED", "MODIFIED") and self._count(obj):
                        return True
        except (urllib3.exceptions.HTTPError, OSError):
            pass
        finally:
            resp.release_conn()
        return False


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


class _Run:
    """One cold start: the figures of it."""

    def __init__(self, total: float, ready: float, first: float, status: float,
                 statuses_early: int, cpu: dict[str, float], catch_ups: int) -> None:
        self.total, self.ready, self.first, self.status = total, ready, first, status
        self.statuses_early, self.cpu, self.catch_ups = statuses_early, cpu, catch_ups
        self.stop = 0.0  # SIGTERM -> process gone (a pod's termination)
        self.exit_code: int | None = None


def _one_run(kube: Any, sb: Any, keys: list[SealingKey], nkeys: int, objects: int,
             controller_args: list[str], pin: bool = False) -> _Run:
    from sandbox import paths
    from sandbox.demo import ControllerProcess, apply_docs, render_kustomization
    from sandbox.kube import write_kubeconfig
    from secretsync import api
    from secretsync.keys import secret_body_for_key
    from secretsync.sealing import seal_secret

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
    for i in range(objects):
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": f"s{i}", "namespace": ns},
                  "stringData": {f"k{j}": f"value-{i}-{j}" for j in range(ITEMS_PER_OBJECT)}}
        doc = seal_secret(secret, sealer.public_key, sealer.fingerprint)
        kube.create_custom(api.GROUP, api.VERSION, api.PLURAL_SEALED, ns, doc)
    token = kube.request_token(ctl_ns, "secretsync-controller")
    kc = write_kubeconfig(Path(tempfile.mkdtemp()) / "kc", sb.server, sb.ca_file,
                          token=token, user="ctl", namespace=ctl_ns)
    ctl = ControllerProcess(kc, controller_namespace=ctl_ns, namespace=ns,
                            extra=("--log-level", "WARNING", "--no-leader-elect",
                                   *controller_args))
    if pin:  # the controller alone on the last core; everything else on the others
        ctl.argv = ["taskset", "-c", str(_LAST_CORE), *ctl.argv]
    secrets_seen = Watcher(kube, f"/api/v1/namespaces/{ns}/secrets",
                           api.MANAGED_SELECTOR,
                           lambda obj: True, objects)
    statuses_seen = Watcher(kube, f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{ns}/"
                            f"{api.PLURAL_SEALED}", "", _synced, objects)
    for w in (secrets_seen, statuses_seen):
        w.start()
    servers = apiserver_pids(paths.STATE)
    # the garbage collector watches every Secret (ownerReferences): same cores
    kcm = apiserver_pids(paths.STATE, (b"kube-controller-manager",))
    server_cpu0 = sum(cpu_seconds(p) for p in servers)
    kcm_cpu0 = sum(cpu_seconds(p) for p in kcm)
    bench_cpu0 = time.process_time()
    t0 = time.perf_counter()
    ctl.start()
    try:
        # the CPU is read at the last Secret; readiness comes after the initial sync (every
        # SealedSecret reconciled before kopf watches), so usually later
        deadline = time.monotonic() + 900
        assert ctl.popen is not None
        while not secrets_seen.reached.wait(0.05):
            if ctl.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"only {len(secrets_seen.seen)}/{objects} Secrets seen; "
                                   f"controller log: {ctl.log()[-2000:]}")
        if secrets_seen.finished_at is None:
            raise RuntimeError(f"only {len(secrets_seen.seen)}/{objects} Secrets seen")
        statuses_early = len(statuses_seen.seen)
        cpu = {"controller": cpu_seconds(ctl.popen.pid),
               "loop": cpu_seconds(ctl.popen.pid, ctl.popen.pid),
               "server": sum(cpu_seconds(p) for p in servers) - server_cpu0,
               "kcm": sum(cpu_seconds(p) for p in kcm) - kcm_cpu0,
               "bench": time.process_time() - bench_cpu0}
        ctl.wait_ready(120)
        t_ready = time.perf_counter() - t0
        if not statuses_seen.reached.wait(300) or statuses_seen.finished_at is None:
            raise RuntimeError(f"only {len(statuses_seen.seen)}/{objects} statuses Synced")
    finally:
        t_stop = time.perf_counter()
        code = ctl.stop()
        t_stop = time.perf_counter() - t_stop
    run = _Run(secrets_seen.finished_at - t0, t_ready, (secrets_seen.first_at or t0) - t0,
               statuses_seen.finished_at - t0, statuses_early, cpu,
               secrets_seen.catch_ups + statuses_seen.catch_ups)
    run.stop, run.exit_code = t_stop, code
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    for d in docs:
        if d["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            kube.delete_object(d)
    wait_gone(kube, ns, ctl_ns)
    return run


def wait_gone(kube: Any, *namespaces: str, longest: float = 300.0) -> None:
    """Wait until deleted namespaces are gone: the namespace controller deleting 1,000 objects
    must not load what is measured next."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline and any(kube.get_namespace(n) for n in namespaces):
        time.sleep(0.5)


def quiet(pids: list[int], limit: float = 0.05, longest: float = 60.0) -> None:
    """Wait until the sandbox's servers are idle (under ``limit`` of a core over 1 s): the
    previous run's namespace deletion and garbage collection must not weigh on the next."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < limit:
            return


SANDBOX_SERVERS = (b"kube-apiserver", b"/etcd", b"kube-controller-manager")
_LAST_CORE = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0


def _pin_others(pids: list[int], cores: set[int]) -> None:
    """Every thread of ``pids`` (the API server, etcd, the controller-manager) and of this
    process onto ``cores``."""
    for pid in [*pids, os.getpid()]:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cores)
            except OSError:
                pass  # a thread that ended meanwhile


def dedicated_core(keys: list[SealingKey], objects: int, runs: int,
                   controller_args: list[str]) -> None:
    """The controller on a core of its own, as in a cluster where the API server runs
    elsewhere: items/s against the one-core RSA ceiling measured on that core."""
    from sandbox import launcher, paths
    from secretsync.kube import Kube

    sb = launcher.running() or launcher.up()
    kube = Kube.from_config(str(sb.kubeconfig))
    everyone = apiserver_pids(paths.STATE, SANDBOX_SERVERS)
    all_cores = set(os.sched_getaffinity(0))
    others = all_cores - {_LAST_CORE}
    items = objects * ITEMS_PER_OBJECT
    ratios = []
    try:
        _pin_others(everyone, others)
        for _ in range(runs):
            quiet(everyone)
            ceiling_1 = ceiling(keys[0], 300, cores={_LAST_CORE})
            r = _one_run(kube, sb, keys[:1], 1, objects, controller_args, pin=True)
            ceiling_1 = max(ceiling_1, ceiling(keys[0], 300, cores={_LAST_CORE}))  # as above
            ratios.append(items / r.total / ceiling_1)
            print(f"  dedicated core: {objects} Secrets in {r.total:5.2f}s (ready "
                  f"{r.ready:.2f}s) = {items / r.total:4.0f} items/s = "
                  f"{100 * ratios[-1]:4.1f}% of that core's RSA ceiling ({ceiling_1:.0f}/s); "
                  f"controller CPU {r.cpu['controller']:.1f}s, API server+etcd "
                  f"{r.cpu['server']:.1f}s on the other core(s)")
    finally:
        _pin_others(everyone, all_cores)
    print(f"  dedicated core: median {100 * sorted(ratios)[len(ratios) // 2]:.1f}% of the "
          "one-core ceiling")


def api_write_costs(kube: Any, n: int) -> dict[str, float]:
    """API-server + etcd core-seconds per write, for the three writes an unsealed object
    costs (Secret create, status patch on the custom resource, Event), measured in this run
    with the admin client, 4 requests in flight."""
    import base64

    from sandbox import paths
    from secretsync import api

    servers = apiserver_pids(paths.STATE)
    ns = f"bench-api-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    owners = [kube.create_custom(api.GROUP, api.VERSION, api.PLURAL_SEALED, ns, {
        "apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND_SEALED,
        "metadata": {"name": f"s{i}", "namespace": ns},
        "spec": {"encryptedData": {f"k{j}": base64.b64encode(os.urandom(560)).decode()
                                   for j in range(ITEMS_PER_OBJECT)}}}) for i in range(n)]

    def secret(o: dict[str, Any]) -> None:
        meta = o["metadata"]
        kube.create_secret(ns, {"metadata": {
            "name": meta["name"], "namespace": ns,
            "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
            "ownerReferences": [{"apiVersion": o["apiVersion"], "kind": api.KIND_SEALED,
                                 "name": meta["name"], "uid": meta["uid"],
                                 "controller": True}]},
            "data": {f"k{j}": base64.b64encode(b"value-%d" % j).decode()
                     for j in range(ITEMS_PER_OBJECT)}})

    def status(o: dict[str, Any]) -> None:
        kube.patch_custom_status(api.GROUP, api.VERSION, api.PLURAL_SEALED, ns,
                                 o["metadata"]["name"], {"observedGeneration": 1, "conditions": [
                                     {"type": "Synced", "status": "True", "reason": "Unsealed",
                                      "message": "Secret is in sync",
                                      "lastTransitionTime": "2026-01-01T00:00:00Z"}]})

    def event(o: dict[str, Any]) -> None:
        kube.create_event(o, reason="Unsealed", message="Secret created", type_="Normal")

    costs = {}
    with ThreadPoolExecutor(4) as pool:
        for name, fn in (("secret", secret), ("status", status), ("event", event)):
            before = sum(cpu_seconds(p) for p in servers)
            list(pool.map(fn, owners))
            costs[name] = (sum(cpu_seconds(p) for p in servers) - before) / n
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    wait_gone(kube, ns)
    return costs


def cluster(keys: list[SealingKey], objects: int, ceiling_rate: float, runs: int,
            controller_args: list[str]) -> None:
    from sandbox import launcher, paths
    from sandbox.demo import apply_crds
    from secretsync.kube import Kube

    # Hold the sandbox's shared users lock (as pytest sessions do): nobody stops it under us.
    paths.DEV.mkdir(parents=True, exist_ok=True)
    users = open(paths.DEV / "users.lock", "w")  # held for the whole run
    fcntl.flock(users, fcntl.LOCK_SH)
    sb = launcher.running() or launcher.up()
    kube = Kube.from_config(str(sb.kubeconfig))
    apply_crds(kube)
    items = objects * ITEMS_PER_OBJECT
    totals: dict[int, list[float]] = {1: [], len(keys): []}
    shares: dict[int, list[float]] = {1: [], len(keys): []}  # of the adjacent ceiling
    everyone = apiserver_pids(paths.STATE, SANDBOX_SERVERS)
    # 1 key and 12 keys alternate: drift over the runs (the sandbox's store grows, the
    # machine is shared) then weighs on both alike instead of on whichever ran last
    for _ in range(runs):
        for nkeys in totals:
            quiet(everyone)
            # The ceiling right before and right after each cold start: this machine's speed
            # drifts by 10-20 % within minutes (a VM sharing its host; seen here: 1,525/s,
            # then 1,250-1,310/s a quarter of an hour later, RSA and API server alike). The
            # better of the two is this run's reference; the best seen in the whole run is
            # the conservative one, reported next to it.
            before = ceiling(keys[0], 400)
            r = _one_run(kube, sb, keys, nkeys, objects, controller_args)
            after = ceiling(keys[0], 400)
            adjacent = max(before, after)
            ceiling_rate = max(ceiling_rate, adjacent)
            totals[nkeys].append(r.total)
            shares[nkeys].append(items / r.total / adjacent)
            c, rsa = r.cpu, items / adjacent * CORES
            print(f"  {nkeys:2d} key(s): cold start -> {objects} Secrets synced in "
                  f"{r.total:5.2f}s: {items / r.total:5.0f} items/s = "
                  f"{100 * items / r.total / adjacent:4.1f}% of the RSA ceiling measured around "
                  f"it ({before:.0f}/s before, {after:.0f}/s after; "
                  f"{100 * items / r.total / ceiling_rate:4.1f}% of the best so far, "
                  f"{ceiling_rate:.0f}/s); ready {r.ready:.2f}s, first Secret {r.first:.2f}s, "
                  f"all statuses Synced {r.status:.2f}s ({r.statuses_early} before the last "
                  f"Secret); SIGTERM -> exit {r.exit_code} in {r.stop:.2f}s"
                  f"{'; watch caught up by LIST' if r.catch_ups else ''}")
            print(f"           CPU until the last Secret: controller {c['controller']:.1f}s "
                  f"(event loop {c['loop']:.1f}s), kube-apiserver+etcd {c['server']:.1f}s, "
                  f"kube-controller-manager {c['kcm']:.1f}s, bench {c['bench']:.1f}s, of "
                  f"{CORES * r.total:.1f} core-seconds; RSA alone {rsa:.1f}")
            others = c["server"] + c["kcm"] + c["bench"]
            print(f"           controller CPU besides RSA: "
                  f"{1000 * (c['controller'] - rsa) / objects:.2f} ms per object; with what the "
                  f"API server, controller-manager and bench used in this run, a controller "
                  f"costing nothing besides RSA would reach "
                  f"{100 * items / ((rsa + others) / CORES) / adjacent:.0f}% of the ceiling")
    medians = {n: sorted(t)[len(t) // 2] for n, t in totals.items()}
    for nkeys, median in medians.items():
        share = sorted(shares[nkeys])[len(shares[nkeys]) // 2]
        print(f"  {nkeys:2d} key(s): median {100 * share:.1f}% of the RSA ceiling measured around "
              f"each cold start (runs {100 * min(shares[nkeys]):.1f}-"
              f"{100 * max(shares[nkeys]):.1f}%); median time {median:.2f}s = "
              f"{100 * items / median / ceiling_rate:.1f}% of the best ceiling of the whole run "
              f"({ceiling_rate:.0f}/s; runs {min(totals[nkeys]):.2f}-{max(totals[nkeys]):.2f}s)")
    print(f"  {len(keys)} keys / 1 key time ratio: {medians[len(keys)] / medians[1]:.2f} "
          "(target <= 1.1)")
    costs = api_write_costs(kube, objects)
    rsa = items / ceiling_rate * CORES
    sec, st, ev = (costs[k] * objects for k in ("secret", "status", "event"))
    print(f"  API-server+etcd CPU per write (same run): Secret create "
          f"{1000 * costs['secret']:.2f} ms, status patch {1000 * costs['status']:.2f} ms, "
          f"Event {1000 * costs['event']:.2f} ms")
    for label, extra in (("Secrets only in the window (statuses, Events after)", sec),
                         ("Secret + status + Event per object", sec + st + ev)):
        bound = (rsa + extra) / CORES
        print(f"  bound with a zero-cost controller, {label}: {bound:.2f}s = "
              f"{100 * items / bound / ceiling_rate:.0f}% of the ceiling (RSA {rsa:.1f} + "
              f"API {extra:.1f} core-s on {CORES} cores)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--items", type=int, default=400, help="items for the pure benchmarks")
    ap.add_argument("--keys", type=int, default=12)
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="cold starts per key count (median)")
    ap.add_argument("--dedicated-core", action="store_true",
                    help="also run the controller alone on one core (the API server, etcd "
                         "and this script on the others) against that core's RSA ceiling")
    ap.add_argument("--controller-arg", action="append", default=[],
                    help="extra controller flag, e.g. --controller-arg=--workers=3")
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
        cluster(keys, args.objects, ceil, args.runs, args.controller_arg)
        if args.dedicated_core and CORES > 1:
            print("controller on a dedicated core:")
            dedicated_core(keys, args.objects, args.runs, args.controller_arg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
