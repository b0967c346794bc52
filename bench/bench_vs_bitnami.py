"""Our SealedSecret controller side by side with Bitnami's (v0.36.6) on the local sandbox.

Prints figures (no assertions). For each run a fresh controller namespace (holding the keys)
and a fresh workload namespace; the controller watches only the workload namespace:

1. Bitnami's controller (``sandbox/bitnami.py``: built with ``go install``, run as a local
   process with its ServiceAccount's token) with N ``bitnami.com/v1alpha1`` SealedSecrets;
2. ours (``python -m secretsync controller``, as its ServiceAccount with the deploy/ RBAC) with
   N ``secretsync.io/v1alpha1`` SealedSecrets carrying the key-fingerprint annotation;
3. both again with K key Secrets in their namespace instead of one (the newest seals): ours
   picks the key by fingerprint, Bitnami tries its keys in Go map order (on average (K+1)/2
   RSA decryptions per item).

Timed, per run: (a) from the first create of N SealedSecrets of ``--items`` items each
(sealed beforehand, RSA-4096) until all N Secrets exist (polled every 0.25 s), the controller
already started and ready; the CPU seconds it used and its peak resident set (``VmHWM`` in
/proc/<pid>/status); (b) a restart: the controller stopped, the N Secrets deleted, a fresh
process started -> all N Secrets back (start-up included; its own VmHWM). Every Secret's
values are checked (the "wrong" column). Both controllers get the same key material.

Bitnami's client-side API rate limit (``--kubeclient-qps`` 5 by default, burst 10) would cap
it at a few objects per second whatever its crypto does; it is switched off here
(``--bitnami-qps -1``) so the figures compare the controllers' work, not a throttle (pass
``--bitnami-qps 5 --timeout 300`` to measure the shipped default: about 3 API requests per
object, so N=200 takes ~2 minutes). Ours has no client-side limit.

Every wait is bounded; namespaces and cluster RBAC objects are removed afterwards. Starts the
sandbox (``python -m sandbox up``) if it is not running, and stops it again if it did.

Usage: python bench/bench_vs_bitnami.py [-n 200] [--items 5] [--keys 5] [--timeout 120]
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import fcntl
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import bitnami, launcher, paths  # noqa: E402
from sandbox.demo import (  # noqa: E402
    PY,
    ControllerProcess,
    apply_crds,
    apply_docs,
    render_kustomization,
    service_account_kubeconfig,
)
from secretsync import api  # noqa: E402
from secretsync.crypto import pem  # noqa: E402
from secretsync.keys import SealingKey, secret_body_for_key  # noqa: E402
from secretsync.kube import Kube  # noqa: E402
from secretsync.sealing import seal_secret  # noqa: E402

RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    impl: str
    keys: int
    n: int
    items: int
    apply_s: float = float("nan")  # creating the N SealedSecrets
    done_s: float | None = None  # first create -> all N Secrets exist (None: timed out)
    secrets: int = 0  # Secrets seen at the end
    wrong: int = 0  # Secrets whose values differ from what was sealed
    cpu_s: float = float("nan")
    hwm_kib: int | None = None
    restart_s: float | None = None  # start of a fresh process -> all N Secrets (re)made
    restart_wrong: int = 0
    restart_hwm_kib: int | None = None
    restart_cpu_s: float = float("nan")
    note: str = ""


def proc_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, ValueError, IndexError):
        return float("nan")


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def make_keys(k: int) -> list[SealingKey]:
    """K RSA-4096 keys, one day apart; the last is the newest (the one that seals)."""
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    return [SealingKey.generate(4096, now=now - _dt.timedelta(days=k - i, minutes=-5))
            for i in range(k)]


def plain_docs(ns: str, n: int, items: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": f"bench-{i:04d}", "namespace": ns},
             "data": {f"item{j}": base64.b64encode(os.urandom(24)).decode()
                      for j in range(items)}}
            for i in range(n)]


def sealed_docs(plain: list[dict[str, Any]], key: SealingKey, for_bitnami: bool
                ) -> list[dict[str, Any]]:
    out = []
    for doc in plain:
        sealed = seal_secret(doc, key.public_key, key.fingerprint)
        if for_bitnami:  # what kubeseal writes: Bitnami's apiVersion, no fingerprint hint
            sealed["apiVersion"] = bitnami.API_VERSION
            sealed["metadata"]["annotations"].pop(api.ANN_KEY_FINGERPRINT, None)
        out.append(sealed)
    return out


def ns_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def wait(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


class Run:
    """One measured run: namespaces, RBAC, keys, the controller, the SealedSecrets."""

    def __init__(self, kube: Kube, sb: launcher.Sandbox, impl: str, keys: list[SealingKey],
                 args: argparse.Namespace, work: Path) -> None:
        self.kube, self.sb, self.impl, self.keys, self.args = kube, sb, impl, keys, args
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.ctl_ns = f"bench-{impl[:2]}-ctl-{tag}"
        self.ns = f"bench-{impl[:2]}-{tag}"
        self.work = work
        self.cleanup_docs: list[dict[str, Any]] = []
        self.result = Result(impl, len(keys), args.n, args.items)

    # --- set-up per implementation ----------------------------------------------------------

    def _install_bitnami(self) -> None:
        bitnami.install(self.kube, self.ctl_ns)
        self.cleanup_docs += [d for d in bitnami.rbac_docs(self.ctl_ns)
                              if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        for i, key in enumerate(self.keys):
            assert key.certificate is not None
            self.kube.create_secret(self.ctl_ns, bitnami.key_secret(
                pem.private_key_to_pem(key.private_key), pem.certificate_to_pem(key.certificate),
                namespace=self.ctl_ns, name=f"sealed-secrets-key{i}"))

    def _install_ours(self) -> None:
        docs = render_kustomization(namespace=self.ctl_ns, suffix=f"-{self.tag}")
        apply_docs(self.kube, docs, kinds=RBAC_KINDS)
        self.cleanup_docs += [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        for key in self.keys:
            self.kube.create_secret(self.ctl_ns, secret_body_for_key(key, namespace=self.ctl_ns))

    def _process(self, phase: str) -> Any:
        log_path = self.work / f"{self.impl}-{self.tag}-{phase}.log"
        if self.impl == "bitnami":
            return bitnami.BitnamiController(
                self.kube, self.sb.server, self.sb.ca_file, self.ctl_ns, watch=[self.ns],
                extra=[f"--kubeclient-qps={self.args.bitnami_qps}", "--key-renew-period=0"],
                log_path=log_path)
        kubeconfig = service_account_kubeconfig(self.kube, self.ctl_ns, "secretsync-controller",
                                                self.work / f"ours-{self.tag}.kubeconfig")
        return ControllerProcess(
            kubeconfig, controller_namespace=self.ctl_ns, namespace=self.ns,
            extra=["--controller-name", f"bench-{self.tag}", "--key-renew-period", "0"],
            log_path=log_path)

    # --- the measurement -------------------------------------------------------------------

    def run(self) -> Result:
        r, kube, args = self.result, self.kube, self.args
        for ns in (self.ctl_ns, self.ns):
            kube.apply(ns_doc(ns))
        is_bitnami = self.impl == "bitnami"
        plain = plain_docs(self.ns, args.n, args.items)
        sealed = sealed_docs(plain, self.keys[-1], for_bitnami=is_bitnami)
        expected = {d["metadata"]["name"]: d["data"] for d in plain}
        if is_bitnami:
            self._install_bitnami()
        else:
            self._install_ours()
        group, version = ((bitnami.GROUP, bitnami.VERSION) if is_bitnami
                          else (api.GROUP, api.VERSION))
        seen: dict[str, dict[str, Any]] = {}

        def all_there() -> bool:
            seen.clear()
            for s in kube.list_secrets(self.ns):
                if s["metadata"]["name"] in expected:
                    seen[s["metadata"]["name"]] = s
            return len(seen) == len(expected)

        def none_there() -> bool:
            return not any(s["metadata"]["name"] in expected for s in kube.list_secrets(self.ns))

        def create(doc: dict[str, Any]) -> None:
            kube.create_custom(group, version, api.PLURAL_SEALED, self.ns, doc)

        def delete(name: str) -> None:
            kube.delete_secret(self.ns, name)

        # phase 1: the controller is ready, then N SealedSecrets are created
        ctl = self._process("apply")
        ctl.start()
        try:
            try:
                ctl.wait_ready(args.ready_timeout)
            except RuntimeError as exc:
                r.note = f"not ready: {str(exc).splitlines()[0]}"
                print(f"  {self.impl}: {r.note}; log: {ctl.log_path}", file=sys.stderr)
                return r
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, sealed))
            r.apply_s = time.perf_counter() - t0
            finished = wait(all_there, args.timeout)
            elapsed = time.perf_counter() - t0
            r.done_s = elapsed if finished else None
            r.secrets = len(seen)
            r.wrong = sum(1 for name, s in seen.items() if s.get("data") != expected[name])
            r.cpu_s = proc_cpu(ctl.popen.pid)
            r.hwm_kib = proc_hwm(ctl.popen.pid)
            if not finished:
                r.note = f"timed out after {args.timeout:.0f}s; log: {ctl.log_path}"
                return r
        finally:
            ctl.stop()
        if args.no_restart:
            return r
        # phase 2: controller stopped, the N Secrets deleted; a fresh process starts with the
        # N SealedSecrets already there (a restart, upgrade or switch-over)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(delete, expected))
        if not wait(none_there, args.timeout):
            r.note = "the Secrets could not be deleted before the restart"
            return r
        ctl = self._process("restart")
        t0 = time.perf_counter()
        ctl.start()
        try:
            finished = wait(all_there, args.timeout)
            r.restart_s = time.perf_counter() - t0 if finished else None
            r.restart_wrong = sum(1 for name, s in seen.items()
                                  if s.get("data") != expected[name])
            r.restart_hwm_kib = proc_hwm(ctl.popen.pid)
            r.restart_cpu_s = proc_cpu(ctl.popen.pid)
            if not finished:
                r.note = f"restart: timed out after {args.timeout:.0f}s; log: {ctl.log_path}"
        finally:
            ctl.stop()
        return r

    def cleanup(self) -> None:
        # the logs stay for reading; the token kubeconfig does not
        (self.work / f"ours-{self.tag}.kubeconfig").unlink(missing_ok=True)
        for doc in self.cleanup_docs:
            try:
                self.kube.delete_object(doc)
            except Exception as exc:  # keep cleaning up the rest
                print(f"  cleanup: {exc}", file=sys.stderr)
        for ns in (self.ns, self.ctl_ns):
            try:
                self.kube.delete_object(ns_doc(ns))
            except Exception as exc:
                print(f"  cleanup: {exc}", file=sys.stderr)


# --- report ----------------------------------------------------------------------------------


def fmt(v: float | None, spec: str = "7.2f", unit: str = "") -> str:
    if v is None or v != v:  # None or NaN
        return "-".rjust(len(format(0.0, spec)) + len(unit))
    return format(v, spec) + unit


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or a != a or b != b or b == 0:
        return "   -  "
    return f"{a / b:6.2f}x"


def report(results: list[Result]) -> None:
    print()
    print(f"{'controller':<18}{'keys':>5}{'N':>5}{'items':>6}{'apply s':>8}{'all s':>8}"
          f"{'items/s':>8}{'CPU s':>7}{'peak RSS':>10}{'restart s':>10}{'CPU s':>7}"
          f"{'peak RSS':>10}{'wrong':>6}")
    for r in results:
        name = f"bitnami {bitnami.BITNAMI_VERSION}" if r.impl == "bitnami" else "secretsync"
        irate = r.n * r.items / r.done_s if r.done_s else None
        hwm = r.hwm_kib / 1024 if r.hwm_kib is not None else None
        rhwm = r.restart_hwm_kib / 1024 if r.restart_hwm_kib is not None else None
        print(f"{name:<18}{r.keys:>5}{r.n:>5}{r.n * r.items:>6}{fmt(r.apply_s, '8.2f')}"
              f"{fmt(r.done_s, '8.2f')}{fmt(irate, '8.0f')}{fmt(r.cpu_s, '7.2f')}"
              f"{fmt(hwm, '6.1f', ' MiB')}{fmt(r.restart_s, '10.2f')}{fmt(r.restart_cpu_s, '7.2f')}"
              f"{fmt(rhwm, '6.1f', ' MiB')}"
              f"{r.wrong + r.restart_wrong:>6}" + (f"   {r.note}" if r.note else ""))
    print("  apply s: creating the N SealedSecrets (8 client threads); all s: first create"
          " -> all N Secrets exist;")
    print("  restart s: a fresh process started with the N SealedSecrets present and their"
          " Secrets deleted -> all N back (start-up included);")
    print("  CPU s: the controller's user+system time in that phase; peak RSS: VmHWM"
          " of each process")
    by = {(r.impl, r.keys): r for r in results}
    key_counts = sorted({r.keys for r in results})
    print("\nratios ours / Bitnami (< 1: ours faster / smaller):")
    for k in key_counts:
        o, b = by.get(("ours", k)), by.get(("bitnami", k))
        if o and b:
            print(f"  K={k}: time to all Secrets {ratio(o.done_s, b.done_s)}   "
                  f"CPU {ratio(o.cpu_s, b.cpu_s)}   peak RSS {ratio(o.hwm_kib, b.hwm_kib)}   "
                  f"restart {ratio(o.restart_s, b.restart_s)}   "
                  f"restart peak RSS {ratio(o.restart_hwm_kib, b.restart_hwm_kib)}")
    if len(key_counts) == 2:
        k1, k2 = key_counts
        print(f"\neffect of the key count (K={k2} / K={k1}):")
        for impl, label in (("bitnami", "Bitnami (tries every key)"),
                            ("ours", "ours (key by fingerprint)")):
            a, b = by.get((impl, k2)), by.get((impl, k1))
            if a and b:
                print(f"  {label:<28}time {ratio(a.done_s, b.done_s)}   "
                      f"CPU {ratio(a.cpu_s, b.cpu_s)}   restart {ratio(a.restart_s, b.restart_s)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--n", type=int, default=200, help="SealedSecrets per run")
    ap.add_argument("--items", type=int, default=5, help="items per SealedSecret")
    ap.add_argument("--keys", type=int, default=5, help="key count of the many-keys runs")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for all Secrets of one run")
    ap.add_argument("--ready-timeout", type=float, default=90.0,
                    help="seconds to wait for a controller to become ready")
    ap.add_argument("--bitnami-qps", default="-1",
                    help="Bitnami's --kubeclient-qps (-1: no client-side rate limit)")
    ap.add_argument("--no-restart", action="store_true",
                    help="skip the restart phase (Secrets deleted, fresh process, backlog of N)")
    ap.add_argument("--keep-sandbox", action="store_true",
                    help="leave the sandbox running even if this script started it")
    args = ap.parse_args()

    # Hold the sandbox's shared users lock (as pytest sessions do), so a test session that
    # started the sandbox does not stop it under us when it ends.
    paths.DEV.mkdir(parents=True, exist_ok=True)
    users = open(paths.DEV / "users.lock", "w")
    fcntl.flock(users, fcntl.LOCK_SH)
    started = False
    sb = launcher.running()
    if sb is None:
        print("# starting the sandbox (python -m sandbox up)", flush=True)
        try:
            rc = subprocess.call([PY, "-m", "sandbox", "up"], cwd=REPO, timeout=3600)
        except subprocess.TimeoutExpired:
            print("sandbox did not come up within an hour", file=sys.stderr)
            return 1
        sb = launcher.running()
        if rc != 0 or sb is None:
            print("the sandbox could not start", file=sys.stderr)
            return 1
        started = True
    kube = Kube.from_config(str(sb.kubeconfig))
    work = Path(tempfile.mkdtemp(prefix="bench-vs-bitnami-"))
    results: list[Result] = []
    try:
        print("# building/finding Bitnami's controller ...", flush=True)
        bitnami.ensure_controller()
        apply_crds(kube)
        bitnami.install_crd(kube)
        print(f"# bench_vs_bitnami: N={args.n} SealedSecrets x {args.items} items, RSA-4096, "
              f"{len(os.sched_getaffinity(0))} usable core(s); Bitnami --kubeclient-qps="
              f"{args.bitnami_qps}; ours --workers default; logs in {work}", flush=True)
        print(f"# load average: {load()}", flush=True)
        t = time.perf_counter()
        keys = make_keys(max(1, args.keys))
        print(f"# generated {len(keys)} RSA-4096 keys in {time.perf_counter() - t:.1f}s",
              flush=True)
        plan = [("bitnami", keys[-1:]), ("ours", keys[-1:])]
        if args.keys > 1:
            plan += [("bitnami", keys), ("ours", keys)]
        for impl, ks in plan:
            print(f"# run: {impl}, K={len(ks)} ...", flush=True)
            run = Run(kube, sb, impl, ks, args, work)
            try:
                r = run.run()
            except Exception as exc:  # one failed run must not hide the others' figures
                r = run.result
                r.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            finally:
                run.cleanup()
            results.append(r)
            print(f"#   all Secrets after {fmt(r.done_s, '.2f', ' s').strip()}, "
                  f"peak RSS {fmt((r.hwm_kib or 0) / 1024, '.1f', ' MiB').strip()}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        kube.close()
        fcntl.flock(users, fcntl.LOCK_UN)
        if started and not args.keep_sandbox:
            try:  # stop it only if no test session uses it
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                subprocess.call([PY, "-m", "sandbox", "down"], cwd=REPO, timeout=300)
    report(results)
    print(f"\nload average at the end: {load()}  (2 shared cores: wall times are noisy when"
          " others work; CPU s is steadier)")
    return 0 if results and all(r.done_s is not None and not r.wrong for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
