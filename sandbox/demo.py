"""`make demo`: the sandbox, the controller, seal -> apply -> Secret -> self-healing, then
an ExternalSecret from Vault, rotated, restarting a Deployment (``sandbox.demo_external``).

Also the helpers the SealedSecret integration tests use to install ``deploy/`` without kubectl
(a tiny kustomize subset: resources, namespace, labels) and to run the controller as a
subprocess authenticated as its ServiceAccount (a TokenRequest token), so the RBAC in
``deploy/`` is what the controller really runs with.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sandbox import demo_external, paths, proc
from sandbox.demo_external import DemoFailed, until

REPO = paths.REPO
DEPLOY = REPO / "deploy"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
PY = str(paths.VENV_BIN / "python")


# --- deploy/ without kubectl --------------------------------------------------------------


def render_kustomization(
    directory: Path = DEPLOY, *, namespace: str | None = None, suffix: str = ""
) -> list[dict[str, Any]]:
    """The manifests of a kustomization (resources + namespace + labels), optionally moved to
    another ``namespace`` with cluster-scoped names suffixed (parallel test installs)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    target = namespace or kust.get("namespace")
    labels: dict[str, str] = {}
    for entry in kust.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources") or []:
        for doc in yaml.safe_load_all((directory / res).read_text()):
            if doc:
                docs.append(doc)
    old_ns = kust.get("namespace")
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        meta["labels"] = {**labels, **(meta.get("labels") or {})}
        kind = doc["kind"]
        if kind == "Namespace":
            meta["name"] = target
        elif kind not in CLUSTER_SCOPED and target:
            meta["namespace"] = target
        if kind in ("ClusterRole", "ClusterRoleBinding") and suffix:
            meta["name"] = meta["name"] + suffix
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            if doc["roleRef"]["kind"] == "ClusterRole" and suffix:
                doc["roleRef"]["name"] += suffix
            for subj in doc.get("subjects") or []:
                if subj.get("kind") == "ServiceAccount" and subj.get("namespace") in (
                    old_ns, None
                ):
                    subj["namespace"] = target
        out.append(doc)
    return out


def apply_docs(kube: Any, docs: Iterable[dict[str, Any]], *, dry_run: bool = False,
               kinds: set[str] | None = None) -> list[str]:
    applied = []
    for doc in docs:
        if kinds is not None and doc["kind"] not in kinds:
            continue
        kube.apply(doc, dry_run=dry_run)
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return applied


def apply_crds(kube: Any, timeout: float = 30.0) -> None:
    names = []
    for f in sorted((REPO / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                kube.apply(doc)
                names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while not kube.crd_established(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established after {timeout:.0f}s")
            time.sleep(0.1)


def service_account_kubeconfig(kube: Any, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (TokenRequest token)."""
    from sandbox import launcher
    from sandbox.kube import write_kubeconfig

    sb = launcher.running()
    if sb is None:
        raise RuntimeError("the sandbox is not running")
    token = kube.request_token(namespace, sa, expiration_seconds=3600)
    return write_kubeconfig(path, sb.server, sb.ca_file, token=token, user=sa,
                            namespace=namespace)


def ensure_kubectl() -> Path:
    """kubectl from k8s.io/kubernetes at the sandbox's version (cached like the other
    binaries), for ``kubectl apply -k deploy/ --dry-run=server``."""
    from sandbox import builder

    return builder.ensure_kubectl()


# --- the controller as a subprocess -------------------------------------------------------


class ControllerProcess:
    """``python -m secretsync controller ...`` with its output captured in ``log_path``."""

    def __init__(self, kubeconfig: Path, *, controller_namespace: str,
                 namespace: str | None = None, extra: Iterable[str] = (),
                 log_path: Path | None = None) -> None:
        self.port = proc.free_port()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="secretsync-ctl-",
                                                          suffix=".log")[1])
        self.argv = [PY, "-m", "secretsync", "controller", "--kubeconfig", str(kubeconfig),
                     "--controller-namespace", controller_namespace,
                     "--http-host", "127.0.0.1", "--http-port", str(self.port), *extra]
        if namespace:
            self.argv += ["--namespace", namespace]
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, *, cwd: Path = REPO, env: Mapping[str, str] | None = None
              ) -> ControllerProcess:
        """Start ``argv``; ``env`` replaces this process's environment (e.g. an image's)."""
        full = dict(os.environ if env is None else env)
        full["PYTHONUNBUFFERED"] = "1"
        full.pop("KUBECONFIG", None)  # only the explicit one
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          env=full, cwd=cwd, start_new_session=True)
        return self

    def http(self, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def ready_state(self) -> str:
        try:
            status, body = self.http("/readyz")
        except OSError:
            return "down"
        return body.decode().strip() if status == 200 else "starting"

    def wait_ready(self, timeout: float = 60.0, state: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"controller exited with {self.popen.returncode}:\n"
                                   + self.log()[-3000:])
            if self.ready_state() == state:
                return
            time.sleep(0.2)
        raise RuntimeError(f"controller not {state} after {timeout:.0f}s:\n"
                           + self.log()[-3000:])

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no lease release."""
        if self.alive():
            assert self.popen is not None
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        return proc.stop_popen_group(self.popen, timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --- the demo -----------------------------------------------------------------------------


class Steps:
    """Prints one line per step with the time it took (since the previous step)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def __call__(self, text: str, *details: str) -> None:
        now = time.monotonic()
        print(f"[{now - self.last:4.1f}s] {text}", flush=True)
        for line in details:
            print(f"        {line}", flush=True)
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.start


def _secret_lines(secret: dict[str, Any]) -> list[str]:
    """The demo Secret (dummy values, shown on purpose): owner, uid and data."""
    meta = secret["metadata"]
    owner = (meta.get("ownerReferences") or [{}])[0]
    return [f"Secret {meta['namespace']}/{meta['name']}: owner {owner.get('kind')}/"
            f"{owner.get('name')}, uid {meta.get('uid')}"] + [
        f"  {k}: {base64.b64decode(v).decode(errors='replace')}"
        for k, v in sorted((secret.get("data") or {}).items())]


def _seal(plain: dict[str, Any], out: Path, kubeconfig: Path) -> dict[str, Any]:
    """``secretsync seal -w out`` (certificate from the cert ConfigMap), plaintext on stdin,
    so no plaintext file is ever written; the SealedSecret."""
    done = subprocess.run(
        [PY, "-m", "secretsync", "seal", "-w", str(out), "--kubeconfig", str(kubeconfig)],
        input=yaml.safe_dump(plain), cwd=REPO, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise DemoFailed(f"secretsync seal exited {done.returncode}: {last}")
    text = out.read_text()
    if plain["stringData"]["password"] in text:
        raise DemoFailed(f"{out} contains the plaintext password")
    sealed: dict[str, Any] = yaml.safe_load(text)
    return sealed


def _sealed_story(kube: Any, ns: str, work: Path, kubeconfig: Path, step: Steps) -> None:
    plain = {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "db-credentials", "namespace": ns, "labels": {"app": "demo"}},
             "stringData": {"username": "app", "password": "correct-horse-battery"}}  # dummy
    sealed = _seal(plain, work / "db-credentials.sealed.yaml", kubeconfig)
    items = sealed["spec"]["encryptedData"]
    step(f"sealed Secret {ns}/db-credentials with the controller's certificate "
         "(fetched from its ConfigMap)",
         "-> db-credentials.sealed.yaml, commit-safe: no plaintext, only the cluster's key "
         "opens it, and only as this name in this namespace",
         *(f"  encryptedData.{k}: {v[:32]}... ({len(v)} chars)" for k, v in sorted(items.items())))

    kube.apply(sealed, plural="sealedsecrets")
    secret = until("the controller to unseal it", lambda: kube.get_secret(ns, "db-credentials"))
    cond = until("SealedSecret status", lambda: ((kube.get_custom(
        "secretsync.io", "v1alpha1", "sealedsecrets", ns, "db-credentials") or {}).get(
        "status") or {}).get("conditions"))[0]
    step(f"applied the SealedSecret; the controller unsealed it "
         f"({cond['type']}={cond['status']}, {cond['reason']})", *_secret_lines(secret))

    old_uid = secret["metadata"]["uid"]
    kube.delete_secret(ns, "db-credentials")
    back = until("the Secret to come back", lambda: (s := kube.get_secret(ns, "db-credentials"))
                 and s["metadata"]["uid"] != old_uid and s)
    step(f"self-heal: deleted the Secret; the controller re-created it (uid {old_uid[:8]}... -> "
         f"{back['metadata']['uid'][:8]}...)")

    kube.patch_secret(ns, "db-credentials",
                      {"data": {"password": base64.b64encode(b"tampered").decode()}})
    until("the hand edit to be undone", lambda: (s := kube.get_secret(ns, "db-credentials"))
          and base64.b64decode(s["data"]["password"]) == b"correct-horse-battery")
    step("self-heal: edited the password by hand; the controller restored it")


def main() -> int:
    from sandbox import launcher, vault
    from secretsync.kube import Kube

    step = Steps()
    print("secretsync demo: seal -> commit-safe file -> unseal -> self-heal; ExternalSecret from "
          "Vault -> rotation -> Secret -> rollout restart", flush=True)
    rc = subprocess.call([PY, "-m", "sandbox", "up"], cwd=REPO)  # builds/starts it if needed
    cfg = launcher.load()
    if rc != 0 or cfg is None:
        print(f"demo failed: the sandbox did not start (`python -m sandbox up` exited {rc})",
              file=sys.stderr)
        return rc or 1
    step("sandbox up: etcd, kube-apiserver, kube-controller-manager (no scheduler, no kubelet), "
         "OpenBao, cloud emulators")
    kubeconfig = paths.DEV / "kubeconfig"
    kube = Kube.from_config(str(kubeconfig))
    # a namespace of its own: tests and other demos may share the sandbox
    ns = f"demo-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="secretsync-demo-"))
    ctl: ControllerProcess | None = None
    cleaned = False
    try:
        apply_crds(kube)
        apply_docs(kube, render_kustomization(),  # rbac.yaml and rbac-external.yaml
                   kinds={"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                          "Role", "RoleBinding"})
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        step(f"CRDs and deploy/ RBAC installed; namespace {ns} created")
        sa_kubeconfig = service_account_kubeconfig(kube, "secretsync", "secretsync-controller",
                                                   work / "controller.kubeconfig")
        # --namespace: never touch the objects of tests in the same sandbox; one replica, no
        # Lease, so a concurrent demo (or a killed one's Lease) cannot hold it up
        ctl = ControllerProcess(sa_kubeconfig, controller_namespace="secretsync", namespace=ns,
                                extra=["--no-leader-elect"], log_path=work / "controller.log")
        ctl.start().wait_ready(90)
        step(f"controller ready, as ServiceAccount secretsync/secretsync-controller, "
             f"watching {ns}")
        _sealed_story(kube, ns, work, kubeconfig, step)
        demo_external.run(kube, ns, demo_external.Vault(cfg["vault_addr"], vault.ROOT_TOKEN),
                          step)
        cleaned = _cleanup(kube, ctl, ns)
        step(f"cleaned up: controller stopped, namespace {ns} and the Vault mount deleted "
             "(the sandbox keeps running: `make dev-down`)")
        print(f"demo done in {step.total():.1f}s", flush=True)
        shutil.rmtree(work, ignore_errors=True)
        return 0
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"demo failed after {step.total():.1f}s: {msg} (controller log: "
              f"{work / 'controller.log'})", file=sys.stderr)
        return 1
    finally:
        if not cleaned:
            _cleanup(kube, ctl, ns)
        (work / "controller.kubeconfig").unlink(missing_ok=True)  # a ServiceAccount token


def _cleanup(kube: Any, ctl: ControllerProcess | None, ns: str) -> bool:
    """Stop the controller, delete the namespace (in the background: its objects go with it)."""
    if ctl is not None:
        ctl.stop()
    with contextlib.suppress(Exception):  # never created, or the API server is gone
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    return True


if __name__ == "__main__":
    sys.exit(main())
