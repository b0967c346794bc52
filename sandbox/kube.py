"""kube-apiserver and kube-controller-manager, built from k8s.io/kubernetes.

The API server authorizes with RBAC, issues and reviews ServiceAccount tokens (TokenRequest,
TokenReview) and trusts one sandbox CA for client certificates; the admin kubeconfig carries a
`system:masters` certificate. The controller-manager runs every default controller so
ownerReference garbage collection, namespace deletion and ServiceAccounts behave as in a real
cluster.
"""

from __future__ import annotations

import base64
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from sandbox import builder, paths, proc
from sandbox.pki import PKI

HOSTS = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
         "kubernetes.default.svc", "10.0.0.1"]


def write_kubeconfig(path: Path, server: str, ca_file: Path, *, cert: Path | None = None,
                     key: Path | None = None, token: str | None = None,
                     user: str = "sandbox", namespace: str | None = None) -> Path:
    """A self-contained kubeconfig (certificates embedded) for one user of the sandbox."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    creds: dict[str, str] = {}
    if cert and key:
        creds = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    if token:
        creds["token"] = token
    context: dict[str, str] = {"cluster": "sandbox", "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
        "clusters": [{"name": "sandbox", "cluster": {
            "server": server, "certificate-authority-data": b64(ca_file)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "sandbox", "context": context}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


def prepare(cfg: dict[str, Any]) -> None:
    """Make the PKI and kubeconfigs (cheap; before anything starts)."""
    pki_dir = paths.STATE / "pki"
    pki = PKI(pki_dir)
    pki.create(HOSTS)
    admin = pki.issue("admin", "admin", org="system:masters")
    kcm = pki.issue("kcm", "system:kube-controller-manager")
    server = f"https://127.0.0.1:{cfg['ports']['apiserver']}"
    cfg["kube"] = {
        "server": server,
        "ca_file": str(pki.ca_cert),
        "ca_key": str(pki.ca_key),
        "sa_key": str(pki.sa_key),
        "sa_pub": str(pki.sa_pub),
        "serving": [str(p) for p in (pki_dir / "apiserver.crt", pki_dir / "apiserver.key")],
        "admin_cert": [str(p) for p in admin],
        "kubeconfig": str(write_kubeconfig(
            paths.DEV / "kubeconfig", server, pki.ca_cert, cert=admin[0], key=admin[1],
            user="admin")),
        "kcm_kubeconfig": str(write_kubeconfig(
            paths.STATE / "kcm.kubeconfig", server, pki.ca_cert, cert=kcm[0], key=kcm[1],
            user="kcm")),
    }


def start_apiserver(cfg: dict[str, Any]) -> proc.Proc:
    binary = builder.ensure_kube()["kube-apiserver"]
    k = cfg["kube"]
    port = cfg["ports"]["apiserver"]
    return proc.spawn("kube-apiserver", [
        str(binary),
        f"--etcd-servers={cfg['etcd_url']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={paths.STATE / 'apiserver-certs'}",
        f"--tls-cert-file={k['serving'][0]}",
        f"--tls-private-key-file={k['serving'][1]}",
        f"--client-ca-file={k['ca_file']}",
        "--authorization-mode=RBAC",
        f"--service-account-issuer=https://127.0.0.1:{port}",
        f"--service-account-key-file={k['sa_pub']}",
        f"--service-account-signing-key-file={k['sa_key']}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=0",
    ])


def start_controller_manager(cfg: dict[str, Any]) -> proc.Proc:
    binary = builder.ensure_kube()["kube-controller-manager"]
    k = cfg["kube"]
    return proc.spawn("kube-controller-manager", [
        str(binary),
        f"--kubeconfig={k['kcm_kubeconfig']}",
        f"--authentication-kubeconfig={k['kcm_kubeconfig']}",
        f"--authorization-kubeconfig={k['kcm_kubeconfig']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={cfg['ports']['kcm']}",
        f"--cert-dir={paths.STATE / 'kcm-certs'}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={k['sa_key']}",
        f"--root-ca-file={k['ca_file']}",
        f"--cluster-signing-cert-file={k['ca_file']}",
        f"--cluster-signing-key-file={k['ca_key']}",
        "--controllers=*",
        "--leader-elect=false",
        "--profiling=false",
        "--v=0",
    ])


def _admin_ssl(cfg: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg["kube"]["ca_file"])
    ctx.load_cert_chain(*cfg["kube"]["admin_cert"])
    return ctx


def get(cfg: dict[str, Any], path: str) -> tuple[int, bytes]:
    """GET `path` from the API server as admin; (status, body)."""
    try:
        with urllib.request.urlopen(cfg["kube"]["server"] + path, timeout=3,
                                    context=_admin_ssl(cfg)) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def apiserver_healthy(cfg: dict[str, Any]) -> bool:
    return get(cfg, "/readyz")[0] == 200


def controller_manager_healthy(cfg: dict[str, Any]) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{cfg['ports']['kcm']}/healthz"
    with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
        if r.status != 200:
            return False
    # the ServiceAccount controller has run: namespaces get their `default` ServiceAccount
    return get(cfg, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
