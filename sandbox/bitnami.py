"""Bitnami's Sealed Secrets controller next to ours: build it, install its CRD and RBAC, run it.

For the side-by-side benchmark (``bench/bench_vs_bitnami.py``) and the switch-over test
(``tests/integration/test_bitnami_switch.py``).

- ``ensure_controller()``: ``github.com/bitnami-labs/sealed-secrets/cmd/controller`` at
  ``BITNAMI_VERSION`` from the Go module proxy, built by ``sandbox.builder`` into
  ``~/.cache/secretsync/bin/sealed-secrets-controller-<version>/controller``.
- ``CRD``: Bitnami's ``sealedsecrets.bitnami.com`` CustomResourceDefinition, written here by
  hand (namespaced, status subresource, spec/status kept as they are).
- ``rbac_docs`` / ``install``: a ServiceAccount with what Bitnami's controller needs (read
  SealedSecrets, write their status, manage Secrets, post Events, read Namespaces).
- ``BitnamiController``: runs the binary as a local process.

Bitnami's controller has no ``--kubeconfig``: it only knows in-cluster configuration
(``KUBERNETES_SERVICE_HOST``/``_PORT`` plus a token and CA at the fixed path
``/var/run/secrets/kubernetes.io/serviceaccount/``). So it is started in a private mount
namespace (``unshare --mount``, we are root) where a tmpfs over ``/run`` holds a TokenRequest
token for its ServiceAccount and the sandbox CA; nothing is written to the host's ``/run``.
Its own namespace (``POD_NAMESPACE``) holds its key Secrets.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sandbox import builder, proc

BITNAMI_VERSION = builder.KUBESEAL_VERSION
GROUP = "bitnami.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "sealedsecrets"
CRD_NAME = f"{PLURAL}.{GROUP}"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
SERVICE_ACCOUNT = "sealed-secrets-controller"

_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "SealedSecret",
            "listKind": "SealedSecretList",
            "plural": PLURAL,
            "singular": "sealedsecret",
        },
        "versions": [{
            "name": VERSION,
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Status", "type": "string",
                 "jsonPath": ".status.conditions[0].message"},
                {"name": "Synced", "type": "string",
                 "jsonPath": ".status.conditions[0].status"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "A Secret sealed with the controller's public key "
                               "(Bitnami Sealed Secrets).",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": dict(_PRESERVE),
                    "status": dict(_PRESERVE),
                },
            }},
        }],
    },
}


# --- build ---------------------------------------------------------------------------------


def ensure_controller() -> Path:
    """The controller binary, built once per machine (about a minute the first time)."""
    return builder.ensure_bitnami_controller()


# --- CRD and RBAC --------------------------------------------------------------------------


def install_crd(kube: Any, timeout: float = 30.0) -> None:
    """Apply ``CRD`` (server-side apply) and wait until it is Established."""
    kube.apply(CRD)
    deadline = time.monotonic() + timeout
    while not kube.crd_established(CRD_NAME):
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRD {CRD_NAME} not Established after {timeout:.0f}s")
        time.sleep(0.1)


def rbac_docs(namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount ``sealed-secrets-controller`` in ``namespace`` and its permissions
    (cluster-scoped names carry the namespace, so several installs can coexist)."""
    cluster_name = f"bitnami-sealed-secrets-{namespace}"
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": cluster_name},
         "rules": [
             {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"],
              "verbs": ["get", "update", "patch"]},
             {"apiGroups": [""], "resources": ["secrets"],
              "verbs": ["get", "list", "watch", "create", "update", "delete"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": cluster_name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": cluster_name},
         "subjects": [subject]},
    ]


def install(kube: Any, namespace: str) -> None:
    """The CRD, the namespace and the ServiceAccount with its RBAC (idempotent)."""
    install_crd(kube)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for doc in rbac_docs(namespace):
        kube.apply(doc)


def uninstall_rbac(kube: Any, namespace: str) -> None:
    """Remove the cluster-scoped RBAC objects of ``install`` (the namespace is the caller's)."""
    for doc in rbac_docs(namespace):
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            kube.delete_object(doc)


def key_secret(tls_key_pem: bytes, tls_crt_pem: bytes, *, namespace: str,
               name: str) -> dict[str, Any]:
    """A key Secret as Bitnami's controller writes and reads it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {KEY_LABEL: "active"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(tls_crt_pem).decode("ascii"),
                 "tls.key": base64.b64encode(tls_key_pem).decode("ascii")},
    }


# --- the process ---------------------------------------------------------------------------

# Runs inside `unshare --mount`: a private tmpfs over /run (= /var/run) with the in-cluster
# files, then the controller in place of the shell (same PID, so /proc/<pid> is its own).
_LAUNCH = (
    'set -e; mount -t tmpfs -o mode=0755,size=1m secretsync-bitnami /run; '
    'd=/run/secrets/kubernetes.io/serviceaccount; mkdir -p "$d"; '
    'cp "$SECRETSYNC_SA_DIR/token" "$SECRETSYNC_SA_DIR/ca.crt" "$SECRETSYNC_SA_DIR/namespace" '
    '"$d/"; exec "$@"'
)


class BitnamiController:
    """Bitnami's controller as a local process, as ServiceAccount ``sealed-secrets-controller``
    of ``namespace`` (which also holds its keys), watching ``watch`` namespaces only (or the
    whole cluster when ``watch`` is None)."""

    def __init__(self, kube: Any, server: str, ca_file: Path, namespace: str, *,
                 watch: Iterable[str] | None = None, extra: Iterable[str] = (),
                 log_path: Path | None = None, binary: Path | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.binary = binary or ensure_controller()
        url = urllib.parse.urlsplit(server)
        self.host, self.api_port = url.hostname or "127.0.0.1", str(url.port or 443)
        self.ca_file = ca_file
        self.port = proc.free_port()
        self.metrics_port = proc.free_port()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="bitnami-ctl-",
                                                          suffix=".log")[1])
        self.args = [f"--listen-addr=127.0.0.1:{self.port}",
                     f"--listen-metrics-addr=127.0.0.1:{self.metrics_port}",
                     "--update-status"]
        if watch is not None:
            others = [ns for ns in watch if ns != namespace]
            self.args.append("--all-namespaces=false")
            if others:
                self.args.append(f"--additional-namespaces={','.join(others)}")
        self.args += list(extra)
        self.popen: subprocess.Popen[bytes] | None = None
        self._sa_dir: Path | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> BitnamiController:
        if shutil.which("unshare") is None:
            raise RuntimeError("`unshare` (util-linux) is needed to run Bitnami's controller")
        token = self.kube.request_token(self.namespace, SERVICE_ACCOUNT,
                                        expiration_seconds=3600)
        self._sa_dir = Path(tempfile.mkdtemp(prefix="bitnami-sa-"))
        (self._sa_dir / "token").write_text(token)
        (self._sa_dir / "token").chmod(0o600)
        shutil.copyfile(self.ca_file, self._sa_dir / "ca.crt")
        (self._sa_dir / "namespace").write_text(self.namespace)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "KUBERNETES_SERVICE_HOST": self.host,
            "KUBERNETES_SERVICE_PORT": self.api_port,
            "POD_NAMESPACE": self.namespace,
            "SECRETSYNC_SA_DIR": str(self._sa_dir),
        }
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LAUNCH, "sh",
                str(self.binary), *self.args]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        return self

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until its HTTP server serves the certificate (keys loaded or generated)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"Bitnami's controller exited with {self.popen.returncode}:"
                                   f"\n{self.tail()}")
            try:
                status, body = self.http("/v1/cert.pem")
                if status == 200 and b"BEGIN CERTIFICATE" in body:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Bitnami's controller not ready after {timeout:.0f}s:\n"
                           f"{self.tail()}")

    def cert_pem(self) -> bytes:
        status, body = self.http("/v1/cert.pem")
        if status != 200:
            raise RuntimeError(f"GET /v1/cert.pem from Bitnami's controller: HTTP {status}")
        return body

    def proc_status(self, field: str) -> int | None:
        """A ``kB`` field of /proc/<pid>/status (e.g. VmHWM, the peak resident set)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except (OSError, ValueError, AssertionError):
            return None
        return None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        rc = proc.stop_popen_group(self.popen, timeout)
        if self._sa_dir is not None:
            shutil.rmtree(self._sa_dir, ignore_errors=True)
            self._sa_dir = None
        return rc

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
