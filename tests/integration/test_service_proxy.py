"""``secretsync validate`` / ``reencrypt --cluster`` through the API server's service proxy.

Without ``--controller-url`` both commands reach the controller's ``/v1/verify`` and
``/v1/rotate`` at ``/api/v1/namespaces/<ns>/services/http:<name>:http/proxy/...`` with the
kubeconfig's credentials, as a developer outside the cluster would. The sandbox runs no pods,
and the kube-apiserver only proxies to an Endpoints address that (a) is not loopback and
(b) is the ``status.podIP`` of the Pod its ``targetRef`` names. So the real controller serves
HTTP on this machine's non-loopback IPv4, and the test stands in for the Deployment with a Pod
object (the deploy/ pod template, never run: no kubelet) whose status carries that IP, the
deploy/ Service without its selector, and an Endpoints object pointing at the Pod.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.demo import PY, apply_docs, render_kustomization
from secretsync import api
from secretsync.crypto.format import unseal_item
from secretsync.errors import KubeNotFound
from secretsync.keys import SealingKey, secret_body_for_key
from secretsync.kube import Kube
from secretsync.sealing import encrypted_items, seal_secret, sealed_label
from tests.integration._controller import Controller, wait_for

pytestmark = pytest.mark.integration

VALUE = "pr0xied-PLAINTEXT-never-shown"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding"}
SA = "secretsync-controller"
SIOCGIFADDR = 0x8915


# --- this machine's address ------------------------------------------------------------------


def interface_ipv4s() -> list[tuple[str, str]]:
    """(interface, IPv4) for every interface that has one (SIOCGIFADDR: no ``ip`` tool)."""
    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on this interface
                continue
        found.append((name, socket.inet_ntoa(raw[20:24])))
    return found


def proxyable_address(addresses: list[tuple[str, str]]) -> str | None:
    """The first address the API server will proxy to (it refuses loopback, link-local,
    multicast and unspecified endpoint IPs)."""
    for _, text in addresses:
        ip = ipaddress.IPv4Address(text)
        if not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified):
            return text
    return None


def test_proxyable_address_skips_loopback_and_link_local() -> None:
    assert proxyable_address([("lo", "127.0.0.1"), ("eth1", "169.254.3.4")]) is None
    assert proxyable_address([]) is None
    assert proxyable_address([("lo", "127.0.0.1"), ("eth0", "192.0.2.2")]) == "192.0.2.2"


@pytest.fixture(scope="module")
def host_ip() -> str:
    addresses = interface_ipv4s()
    ip = proxyable_address(addresses)
    if ip is None:
        pytest.fail(
            "this machine has no non-loopback IPv4 address (found: "
            f"{addresses or 'none'}); the kube-apiserver refuses to proxy to 127.0.0.0/8, so "
            "the service-proxy path of validate/reencrypt cannot be tested here",
            pytrace=False)
    return ip


# --- the controller behind a Service -----------------------------------------------------------


@dataclass
class World:
    kube: Kube
    ns: str  # the controller namespace
    ctl: Controller
    old: SealingKey  # an older key the controller still holds
    new: SealingKey  # its newest key
    admin: Path


def _delete(kube: Kube, doc: dict[str, Any], plural: str | None = None) -> None:
    try:
        kube.delete_object(doc, plural=plural)
    except KubeNotFound:
        pass


@pytest.fixture(scope="module")
def world(sandbox: Any, crds: list[str], token_kubeconfig: Any, host_ip: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    kube = Kube.from_config(str(sandbox.kubeconfig))
    tag = uuid.uuid4().hex[:6]
    ns = f"ssp-{tag}"
    docs = render_kustomization(namespace=ns, suffix=f"-{tag}")
    apply_docs(kube, docs, kinds=RBAC_KINDS)
    now = _dt.datetime.now(_dt.UTC)
    old = SealingKey.generate(2048, now=now - _dt.timedelta(days=10))
    new = SealingKey.generate(2048, now=now - _dt.timedelta(hours=1))
    for key in (old, new):
        kube.create_secret(ns, secret_body_for_key(key, namespace=ns))
    tmp = tmp_path_factory.mktemp("proxy")
    sa_config = token_kubeconfig(ns, SA, tmp / "controller.kubeconfig")
    ctl = Controller(sa_config, ns, tmp / "controller.log", http_host=host_ip,
                     controller_namespace=ns, extra_args=("--key-poll-interval", "1"))
    created: list[tuple[dict[str, Any], str | None]] = []
    try:
        ctl.start()
        # the Pod the Deployment would have made (restricted pod template from deploy/)
        dep = next(d for d in docs if d["kind"] == "Deployment")
        pod = kube.request("POST", f"/api/v1/namespaces/{ns}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{ctl.name}-0", "namespace": ns,
                         "labels": dep["spec"]["template"]["metadata"]["labels"]},
            "spec": dep["spec"]["template"]["spec"]})
        created.append((pod, "pods"))
        kube.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{ctl.name}-0/status",
                     {"status": {"podIP": host_ip, "podIPs": [{"ip": host_ip}]}},
                     content_type="application/merge-patch+json")
        # deploy/'s Service, renamed after this controller, without its selector
        svc = copy.deepcopy(next(d for d in docs if d["kind"] == "Service"))
        svc["metadata"]["name"] = ctl.name
        del svc["spec"]["selector"]
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
        created.append((kube.request("POST", f"/api/v1/namespaces/{ns}/services", svc), None))
        eps = kube.request("POST", f"/api/v1/namespaces/{ns}/endpoints", {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": ctl.name, "namespace": ns},
            "subsets": [{
                "addresses": [{"ip": host_ip, "targetRef": {
                    "kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"]}}],
                "ports": [{"name": "http", "port": ctl.http_port, "protocol": "TCP"}]}]})
        created.append((eps, "endpoints"))
        yield World(kube, ns, ctl, old, new, Path(sandbox.kubeconfig))
    finally:
        ctl.stop()
        for obj, plural in reversed(created):
            _delete(kube, {**obj, "apiVersion": "v1"}, plural)
        for d in docs:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
                _delete(kube, d)
        log = ctl.log()
        assert VALUE not in log, f"plaintext in {ctl.log_path}"
        for block in log.split("Traceback (most recent call last):")[1:]:
            frames = [ln for ln in block.splitlines()[:60] if ln.strip().startswith("File ")]
            assert not any("/secretsync/" in f for f in frames), (
                f"traceback from secretsync code in {ctl.log_path}:\n{block[:3000]}")


def cli(w: World, *argv: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI, no --controller-url: it must go through the API server's proxy."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "SECRETSYNC_DEBUG")}
    out = subprocess.run(
        [PY, "-m", "secretsync", *argv, "--kubeconfig", str(kubeconfig or w.admin),
         "--controller-namespace", w.ns, "--controller-name", w.ctl.name],
        capture_output=True, text=True, timeout=120, env=env)
    both = out.stdout + out.stderr
    assert "Traceback" not in both, both
    assert VALUE not in both
    return out


def sealed(name: str, key: SealingKey, ns: str = "team-a") -> dict[str, Any]:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
              "stringData": {"password": VALUE, "user": "admin"}}
    return seal_secret(secret, key.public_key, key.fingerprint)


def tampered(doc: dict[str, Any]) -> dict[str, Any]:
    """The GCM tag of one item flipped: the RSA part still opens, the value does not."""
    bad = copy.deepcopy(doc)
    raw = bytearray(base64.b64decode(bad["spec"]["encryptedData"]["password"]))
    raw[-1] ^= 0x01
    bad["spec"]["encryptedData"]["password"] = base64.b64encode(bytes(raw)).decode()
    return bad


def write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --- the tests -----------------------------------------------------------------------------


def client_path_kubeconfig(admin: Path, path: Path) -> Path:
    """The admin kubeconfig with ``tls-server-name`` set: secretsync.kube then sends requests
    through the kubernetes client's own urllib3 path instead of its keep-alive connections."""
    config = yaml.safe_load(admin.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["tls-server-name"] = "kubernetes"  # in the sandbox cert's SANs
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_through_the_service_proxy(world: World, tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", sealed("db", world.new), sealed("cache", world.old))
    bad = write(tmp_path / "bad.yaml", sealed("db", world.new), tampered(sealed("api", world.new)))
    for config in (world.admin, client_path_kubeconfig(world.admin, tmp_path / "client.conf")):
        ok = cli(world, "validate", str(good), kubeconfig=config)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.splitlines() == [
            f"{good}: document 1 (SealedSecret team-a/db): ok",
            f"{good}: document 2 (SealedSecret team-a/cache): ok",
        ]

        out = cli(world, "validate", str(bad), kubeconfig=config)
        assert out.returncode == 1
        lines = out.stdout.splitlines()
        assert lines[0] == f"{bad}: document 1 (SealedSecret team-a/db): ok"
        # one line naming the file and the object, with the controller's condition reason
        assert len(lines) == 2 and lines[1].startswith(
            f"{bad}: document 2 (SealedSecret team-a/api): DecryptFailed: "), lines
        assert out.stderr.strip() == "secretsync: 1 SealedSecret(s) would not unseal"


def test_reencrypt_cluster_through_the_service_proxy(world: World, tmp_path: Path) -> None:
    path = write(tmp_path / "old.yaml", sealed("db", world.old))
    out = cli(world, "reencrypt", "--cluster", str(path))
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(path.read_text())
    fp = doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT]
    assert fp == world.new.fingerprint != world.old.fingerprint
    cert = world.kube.get_configmap(world.ns, f"{world.ctl.name}-cert")
    assert cert is not None
    assert cert["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == fp
    # the newest key opens every item (and the plaintext is only in what it opens)
    label = sealed_label(doc)
    opened = {k: unseal_item(world.new.private_key, item, label)
              for k, item in encrypted_items(doc).items()}
    assert opened == {"password": VALUE.encode(), "user": b"admin"}
    assert VALUE not in path.read_text()

    # one object the controller cannot open: the whole file stays as it was
    mixed = write(tmp_path / "mixed.yaml", sealed("db", world.old),
                  tampered(sealed("api", world.old)))
    before, mtime = mixed.read_bytes(), mixed.stat().st_mtime_ns
    failed = cli(world, "reencrypt", "--cluster", str(mixed))
    assert failed.returncode == 1
    errors = [ln for ln in failed.stderr.splitlines() if ln.startswith("secretsync: error: ")]
    assert len(errors) == 1, failed.stderr
    assert f"{mixed}: document 2 (SealedSecret team-a/api): DecryptFailed: " in errors[0]
    assert mixed.read_bytes() == before and mixed.stat().st_mtime_ns == mtime


def test_user_without_services_proxy_gets_one_clear_line(
    world: World, namespace: str, token_kubeconfig: Any, tmp_path: Path
) -> None:
    user = "no-proxy"
    config = token_kubeconfig(namespace, user, tmp_path / "user.kubeconfig")
    path = write(tmp_path / "s.yaml", sealed("db", world.old))
    before = path.read_bytes()
    for argv in (("validate", str(path)), ("reencrypt", "--cluster", str(path))):
        out = cli(world, *argv, kubeconfig=config)
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stdout == ""
        (line,) = out.stderr.splitlines()
        assert line.startswith("secretsync: error: "), line
        assert f'"system:serviceaccount:{namespace}:{user}"' in line
        assert "services/proxy" in line and f"http:{world.ctl.name}:http" in line
    assert path.read_bytes() == before

    # and that permission is all a user needs
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + world.ns
    name = f"proxy-{uuid.uuid4().hex[:6]}"
    world.kube.request("POST", f"{rbac}/roles", {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["create"],
                   "resourceNames": [f"http:{world.ctl.name}:http"]}]})
    world.kube.request("POST", f"{rbac}/rolebindings", {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}]})
    try:
        wait_for(lambda: cli(world, "validate", str(path), kubeconfig=config).returncode == 0,
                 timeout=30, what="validate with services/proxy granted")
    finally:
        world.kube.request("DELETE", f"{rbac}/rolebindings/{name}")
        world.kube.request("DELETE", f"{rbac}/roles/{name}")
