"""`make demo`: the sandbox, the controller, seal -> apply -> Secret -> self-healing.

Also the helpers the SealedSecret integration tests use to install ``deploy/`` without kubectl
(a tiny kustomize subset: resources, namespace, labels) and to run the controller as a
subprocess authenticated as its ServiceAccount (a TokenRequest token), so the RBAC in
``deploy/`` is what the controller really runs with.
"""

from __future__ import annotations

import base64
import copy
import json
import os
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

from sandbox import paths, proc

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


def _say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _wait(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise RuntimeError("timed out waiting")


def _show_secret(secret: dict[str, Any]) -> None:
    meta = secret["metadata"]
    owner = (meta.get("ownerReferences") or [{}])[0]
    print(f"Secret {meta['namespace']}/{meta['name']} (type {secret.get('type')}, "
          f"owner {owner.get('kind')}/{owner.get('name')}, uid {meta.get('uid')})")
    for k, v in sorted((secret.get("data") or {}).items()):
        print(f"  {k}: {base64.b64decode(v).decode(errors='replace')}")


def main() -> int:
    from secretsync.kube import Kube

    _say("starting the sandbox (etcd, kube-apiserver, controller-manager, ...)")
    rc = subprocess.call([PY, "-m", "sandbox", "up"], cwd=REPO)
    if rc != 0:
        return rc
    env_kubeconfig = paths.DEV / "kubeconfig"
    kube = Kube.from_config(str(env_kubeconfig))
    _say("installing the CRDs and deploy/ RBAC (namespace secretsync)")
    apply_crds(kube)
    apply_docs(kube, render_kustomization(),
               kinds={"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                      "Role", "RoleBinding"})
    work = Path(tempfile.mkdtemp(prefix="secretsync-demo-"))
    sa_kubeconfig = service_account_kubeconfig(kube, "secretsync", "secretsync-controller",
                                               work / "controller.kubeconfig")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    _say("starting the controller as ServiceAccount secretsync/secretsync-controller")
    # --namespace demo: the demo must not touch objects of tests running in the same sandbox
    ctl = ControllerProcess(sa_kubeconfig, controller_namespace="secretsync", namespace="demo",
                            log_path=work / "controller.log").start()
    try:
        ctl.wait_ready(90)
        print(f"controller ready; log: {ctl.log_path}")
        ns = "demo"
        plain = {"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "db-credentials", "namespace": ns,
                              "labels": {"app": "demo"}},
                 "stringData": {"username": "app", "password": "correct-horse-battery"}}
        (work / "secret.yaml").write_text(yaml.safe_dump(plain))
        _say("secretsync seal (certificate fetched from the cert ConfigMap)")
        sealed_text = subprocess.check_output(
            [PY, "-m", "secretsync", "seal", "-f", str(work / "secret.yaml"),
             "--kubeconfig", str(env_kubeconfig)], cwd=REPO, text=True)
        print(sealed_text)
        sealed = yaml.safe_load(sealed_text)
        kube.delete_custom("secretsync.io", "v1alpha1", "sealedsecrets", ns, "db-credentials")
        _wait(lambda: kube.get_secret(ns, "db-credentials") is None)
        _say("applying the SealedSecret; the controller unseals it")
        kube.apply(sealed, plural="sealedsecrets")
        secret = _wait(lambda: kube.get_secret(ns, "db-credentials"))
        _show_secret(secret)
        status = _wait(lambda: (kube.get_custom("secretsync.io", "v1alpha1", "sealedsecrets",
                                                ns, "db-credentials") or {}).get("status"))
        print("SealedSecret status:", json.dumps(status["conditions"][0]))
        _say("self-healing: deleting the Secret ...")
        old_uid = secret["metadata"]["uid"]
        kube.delete_secret(ns, "db-credentials")
        back = _wait(lambda: (s := kube.get_secret(ns, "db-credentials"))
                     and s["metadata"]["uid"] != old_uid and s)
        print("... it is back:")
        _show_secret(back)
        _say("self-healing: editing the password by hand ...")
        kube.patch_secret(ns, "db-credentials",
                          {"data": {"password": base64.b64encode(b"tampered").decode()}})
        restored = _wait(lambda: (s := kube.get_secret(ns, "db-credentials"))
                         and base64.b64decode(s["data"]["password"]) != b"tampered" and s)
        print("... restored:")
        _show_secret(restored)
        _say("done; stopping the controller (the sandbox keeps running: `make dev-down`)")
        return 0
    except Exception as exc:
        print(f"demo failed: {exc}\n--- controller log tail ---\n{ctl.log()[-3000:]}",
              file=sys.stderr)
        return 1
    finally:
        ctl.stop()


if __name__ == "__main__":
    sys.exit(main())
