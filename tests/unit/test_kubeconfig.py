"""``secretsync.kube.config`` + ``Kube.from_config``: the kubeconfig and in-cluster set-ups we
read ourselves (without importing ``kubernetes``), the ones left to ``kubernetes.config``,
and the one-line errors. Requests go to a small local HTTPS server (a real TLS handshake that
verifies our client certificate) which echoes what it saw: the bearer token, the client
certificate's CN, the path."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from base64 import b64encode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secretsync.errors import KubeError
from secretsync.kube import Kube
from secretsync.kube import config as kc

# --- a small PKI and an API-server stand-in -----------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: Any, issuer: x509.Name, signer: Any, *, ca: bool = False,
          san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: Any, password: bytes | None = None) -> bytes:
    enc: Any = (serialization.BestAvailableEncryption(password) if password
                else serialization.NoEncryption())
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8, enc))


@dataclass
class Pki:
    dir: Path
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path
    other_key: Path
    encrypted_key: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _cert("test-ca", ca_key, _name("test-ca"), ca_key, ca=True)
    other_ca = _cert("other-ca", other_ca_key, _name("other-ca"), other_ca_key, ca=True)
    server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    server = _cert("apiserver", server_key, ca.subject, ca_key, san=[
        x509.DNSName("kubernetes"), x509.DNSName("localhost"),
        x509.IPAddress(IPv4Address("127.0.0.1"))])
    client = _cert("alice", client_key, ca.subject, ca_key)
    files = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "other_ca": other_ca.public_bytes(serialization.Encoding.PEM),
        "client_cert": client.public_bytes(serialization.Encoding.PEM),
        "client_key": _pem_key(client_key),
        "other_key": _pem_key(ec.generate_private_key(ec.SECP256R1())),
        "encrypted_key": _pem_key(client_key, b"pw"),
        "server_cert": server.public_bytes(serialization.Encoding.PEM),
        "server_key": _pem_key(server_key),
    }
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
    return Pki(d, **{name: d / f"{name}.pem" for name in files})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) \
            else None
        cn = ""
        for rdn in (peer or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "annotations": {
                "authorization": self.headers.get("Authorization", ""),
                "client-cn": cn, "user-agent": self.headers.get("User-Agent", ""),
                "path": self.path}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, *_: Any) -> None:  # refused handshakes are expected in some tests
        pass


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[str]:
    """https://127.0.0.1:<port> of a server that asks for (and verifies) client certs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def seen(kube: Kube, name: str = "ns1") -> dict[str, str]:
    """What the server saw of one GET through ``kube``."""
    obj = kube.get_namespace(name)
    assert obj is not None
    annotations: dict[str, str] = obj["metadata"]["annotations"]
    return annotations


def write_config(path: Path, *, server: str, cluster: dict[str, Any] | None = None,
                 user: dict[str, Any] | None = None, namespace: str | None = None,
                 extra_contexts: list[dict[str, Any]] | None = None,
                 current: str | None = "main") -> Path:
    ctx: dict[str, Any] = {"cluster": "c1", "user": "u1"}
    if namespace:
        ctx["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c1", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u1", "user": user or {}}],
        "contexts": [{"name": "main", "context": ctx}, *(extra_contexts or [])],
    }
    if current:
        doc["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def b64(path: Path) -> str:
    return b64encode(path.read_bytes()).decode()


def data_config(path: Path, pki: Pki, server: str, **kw: Any) -> Path:
    """A sandbox-like kubeconfig: everything inline as *-data."""
    return write_config(path, server=server, cluster={"certificate-authority-data": b64(pki.ca)},
                        user={"client-certificate-data": b64(pki.client_cert),
                              "client-key-data": b64(pki.client_key)}, **kw)


# --- what we read ourselves ----------------------------------------------------------------


def test_data_fields_go_to_private_files_and_authenticate(
        pki: Pki, server: str, tmp_path: Path) -> None:
    kube = Kube.from_config(str(data_config(tmp_path / "config", pki, server)))
    try:
        s = kube._transport.settings
        assert s is not None and s.server == server and not s.insecure and s.token is None
        for got, want in ((s.ca_file, pki.ca), (s.cert_file, pki.client_cert),
                          (s.key_file, pki.client_key)):
            assert got is not None and Path(got).read_bytes() == want.read_bytes()
            assert stat.S_IMODE(os.stat(got).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(Path(got).parent).st_mode) == 0o700
        got_seen = seen(kube)
        assert got_seen["client-cn"] == "alice"
        assert got_seen["authorization"] == ""
        assert got_seen["user-agent"].startswith("secretsync/")
        assert kube._transport._api_client is None  # the kubernetes client was never built
    finally:
        kube.close()


def test_relative_files_are_relative_to_the_kubeconfig(
        pki: Pki, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = os.path.relpath(pki.dir, tmp_path / "conf")
    path = write_config(tmp_path / "conf" / "config", server=server + "/",
                        cluster={"certificate-authority": f"{rel}/ca.pem"},
                        user={"client-certificate": f"{rel}/client_cert.pem",
                              "client-key": f"{rel}/client_key.pem"})
    monkeypatch.chdir(tmp_path / "conf")
    settings = kc.load("config", None)
    assert isinstance(settings, kc.Settings)
    assert settings.server == server  # trailing slash dropped
    assert settings.ca_file == str(pki.ca)
    assert (settings.cert_file, settings.key_file) == (str(pki.client_cert), str(pki.client_key))
    monkeypatch.chdir(tmp_path)
    kube = Kube.from_config(str(path))
    assert seen(kube)["client-cn"] == "alice"
    kube.close()


def test_token_token_file_and_precedence(pki: Pki, server: str, tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    cluster = {"certificate-authority": str(pki.ca)}
    cases = [({"token": "inline-t"}, "Bearer inline-t"),
             ({"tokenFile": "tok"}, "Bearer from-file"),  # relative, newline stripped
             ({"token": "inline-t", "tokenFile": "tok"}, "Bearer inline-t")]
    for user, header in cases:
        kube = Kube.from_config(str(write_config(tmp_path / "config", server=server,
                                                 cluster=cluster, user=user)))
        got = seen(kube)
        assert got["authorization"] == header and got["client-cn"] == ""
        assert kube.connection().token == header.split()[1]
        kube.close()


def test_token_file_is_reread_when_older_than_a_minute(
        pki: Pki, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(kc, "_clock", lambda: now[0])
    tok = tmp_path / "tok"
    tok.write_text("one")
    kube = Kube.from_config(str(write_config(
        tmp_path / "config", server=server, cluster={"certificate-authority": str(pki.ca)},
        user={"tokenFile": str(tok)})))
    tok.write_text("two")
    now[0] += 59
    assert seen(kube)["authorization"] == "Bearer one"
    now[0] += 1
    assert seen(kube)["authorization"] == "Bearer two"
    assert kube.connection().token == "two"
    tok.unlink()  # a failed re-read keeps the last token
    now[0] += 120
    assert seen(kube)["authorization"] == "Bearer two"
    kube.close()


def test_context_selection_and_namespace(pki: Pki, server: str, tmp_path: Path) -> None:
    other = {"name": "other", "context": {"cluster": "c1", "user": "u1", "namespace": "team-b"}}
    path = data_config(tmp_path / "config", pki, server, namespace="team-a",
                       extra_contexts=[other])
    assert Kube.from_config(str(path)).default_namespace == "team-a"
    kube = Kube.from_config(str(path), "other")
    assert kube.default_namespace == "team-b"
    assert kube.connection().namespace == "team-b"
    path = data_config(tmp_path / "config2", pki, server, current="other", extra_contexts=[
        {"name": "other", "context": {"cluster": "c1", "user": "u1"}}])
    assert Kube.from_config(str(path)).default_namespace == "default"


def test_the_kubeconfig_is_found_like_kubectl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert kc.config_path(None) is None  # then in-cluster
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert kc.config_path(None) == str(tmp_path / ".kube" / "config")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(["/a/first", "/b/second"]))
    assert kc.config_path(None) == "/a/first"
    assert kc.config_path("/explicit") == "/explicit"


def test_insecure_skip_tls_verify(pki: Pki, server: str, tmp_path: Path) -> None:
    user = {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}
    kube = Kube.from_config(str(write_config(
        tmp_path / "config", server=server, cluster={"insecure-skip-tls-verify": True},
        user=user)))
    assert seen(kube)["client-cn"] == "alice"
    assert kube.connection().insecure is True
    kube = Kube.from_config(str(write_config(
        tmp_path / "config", server=server,
        cluster={"certificate-authority": str(pki.other_ca)}, user=user)))
    with pytest.raises(KubeError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        kube.get_namespace("ns1")


def test_connection_is_what_the_kubernetes_client_would_give(
        pki: Pki, server: str, tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("t0k")
    path = write_config(tmp_path / "config", server=server, namespace="ns",
                        cluster={"certificate-authority": str(pki.ca)},
                        user={"tokenFile": "tok", "client-certificate": str(pki.client_cert),
                              "client-key": str(pki.client_key)})
    ours = Kube.from_config(str(path)).connection()
    theirs = Kube._from_client_config(kc.Fallback(str(path), "test"), None).connection()
    assert ours == theirs
    assert ours.token == "t0k" and ours.namespace == "ns" and ours.cert_path


def test_api_client_is_built_lazily_with_the_same_credentials(
        pki: Pki, server: str, tmp_path: Path) -> None:
    from kubernetes import client

    kube = Kube.from_config(str(data_config(tmp_path / "config", pki, server)))
    assert kube._transport._api_client is None
    ns = client.CoreV1Api(kube.api_client).read_namespace("via-client")
    assert ns.metadata.annotations["client-cn"] == "alice"
    assert kube.api_client is kube.api_client
    kube.close()


class _DroppingServer(_Server):
    """Keeps its connections so that ``drop()`` can cut them all at once, without a TLS
    close_notify: what clients of an API server that exits see."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.conns: list[Any] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        self.conns.append(request)
        super().process_request(request, client_address)

    def drop(self) -> None:
        self.shutdown()
        self.server_close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def _tls_server(pki: Pki, port: int) -> _DroppingServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    httpd = _DroppingServer(("127.0.0.1", port), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_requests_after_the_api_server_restarted(pki: Pki, tmp_path: Path) -> None:
    """Every kept-alive connection dies with the server; the first request afterwards must not
    fail (it did, with SSLEOFError, before), nor the ones after it."""
    first = _tls_server(pki, 0)
    port = first.server_address[1]
    kube = Kube.from_config(str(data_config(tmp_path / "config", pki,
                                            f"https://127.0.0.1:{port}")))
    try:
        with ThreadPoolExecutor(4) as pool:  # several connections kept alive at once
            list(pool.map(lambda i: seen(kube, f"ns{i}"), range(16)))
        assert kube._transport.pool is not None and len(kube._transport.pool._idle) > 1
        first.drop()
        second = _tls_server(pki, port)
        try:
            for i in range(3):
                assert seen(kube, f"after{i}")["path"].endswith(f"after{i}")
        finally:
            second.drop()
    finally:
        kube.close()


# --- in-cluster ----------------------------------------------------------------------------


@pytest.fixture
def pod(pki: Pki, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ServiceAccount directory and environment as a pod has them; no kubeconfig."""
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("pod-token-1")
    (sa / "ca.crt").write_bytes(pki.ca.read_bytes())
    (sa / "namespace").write_text("pod-ns\n")
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(sa))
    port = server.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return sa


def test_in_cluster_and_its_token_rotation(
        pod: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(kc, "_clock", lambda: now[0])
    kube = Kube.from_config()
    assert kube.default_namespace == "pod-ns"
    conn = kube.connection()
    assert (conn.server, conn.ca_path, conn.token) == (
        server, str(pod / "ca.crt"), "pod-token-1")
    assert seen(kube)["authorization"] == "Bearer pod-token-1"
    (pod / "token").write_text("pod-token-2")  # the kubelet rotated the bound token
    assert seen(kube)["authorization"] == "Bearer pod-token-1"
    now[0] += 61
    assert seen(kube)["authorization"] == "Bearer pod-token-2"
    assert kube.connection().token == "pod-token-2"
    kube.close()


def test_in_cluster_ipv6_host(pod: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kc.load_in_cluster().server == "https://[fd00::1]:443"


@pytest.mark.parametrize(("breakage", "needle"), [
    ("no-env", "KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set"),
    ("empty-token", "token file {sa}/token is empty"),
    ("no-ca", "CA file {sa}/ca.crt does not exist"),
    ("bad-ca", "CA file {sa}/ca.crt: cannot load it"),
])
def test_in_cluster_errors(pod: Path, monkeypatch: pytest.MonkeyPatch, breakage: str,
                           needle: str) -> None:
    if breakage == "no-env":
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    elif breakage == "empty-token":
        (pod / "token").write_text("")
    elif breakage == "no-ca":
        (pod / "ca.crt").unlink()
    else:
        (pod / "ca.crt").write_text("not a certificate")
    with pytest.raises(KubeError) as err:
        Kube.from_config()
    msg = err.value.message
    assert msg.startswith("cannot load the in-cluster configuration: ")
    assert needle.format(sa=pod) in msg and "\n" not in msg


def test_nothing_to_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeError, match=r"^no kubeconfig found: pass --kubeconfig"):
        Kube.from_config()


# --- what falls back to kubernetes.config ----------------------------------------------------


@pytest.mark.parametrize(("cluster", "user", "why"), [
    ({"tls-server-name": "kubernetes"}, {}, "uses tls-server-name"),
    ({"proxy-url": "http://proxy:3128"}, {}, "uses proxy-url"),
    ({}, {"exec": {"command": "aws"}}, "uses exec"),
    ({}, {"auth-provider": {"name": "oidc"}}, "uses auth-provider"),
    ({}, {"username": "u", "password": "p"}, "uses password, username"),
    ({}, {"token": "t", "as": "admin"}, "uses as"),
])
def test_set_ups_we_do_not_reproduce_fall_back(
        tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], why: str) -> None:
    path = write_config(tmp_path / "config", server="https://10.0.0.1:6443",
                        cluster=cluster, user=user)
    assert kc.load(str(path), None) == kc.Fallback(str(path), why)


def test_a_server_without_scheme_falls_back(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config", server="10.0.0.1:6443")
    assert isinstance(kc.load(str(path), None), kc.Fallback)


def test_fallback_tls_server_name_still_works(pki: Pki, server: str, tmp_path: Path) -> None:
    path = data_config(tmp_path / "config", pki, server, namespace="fb")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["tls-server-name"] = "kubernetes"  # in the server's SANs
    path.write_text(yaml.safe_dump(doc))
    kube = Kube.from_config(str(path))
    # the client's own path
    assert kube._transport.settings is None and kube._transport.pool is None
    got = seen(kube)
    assert got["client-cn"] == "alice" and got["path"] == "/api/v1/namespaces/ns1"
    conn = kube.connection()
    assert conn.server == server and conn.namespace == "fb" and conn.cert_path
    kube.close()


def test_fallback_exec_plugin_still_works(pki: Pki, server: str, tmp_path: Path) -> None:
    cred = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
            "status": {"token": "from-exec"}}
    path = write_config(tmp_path / "config", server=server,
                        cluster={"certificate-authority": str(pki.ca)},
                        user={"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                       "command": sys.executable,
                                       "args": ["-c", f"print({json.dumps(cred)!r})"]}})
    kube = Kube.from_config(str(path))
    assert kube._transport.settings is None and kube._transport.pool is not None  # our connections
    assert seen(kube)["authorization"] == "Bearer from-exec"
    assert kube.connection().token == "from-exec"
    kube.close()


_PROBE = """
import sys
from secretsync.kube import Kube
kube = Kube.from_config(sys.argv[1])
got = kube.get_namespace("probe")["metadata"]["annotations"]["client-cn"]
print(got, sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes"))
"""


def test_the_common_path_never_imports_kubernetes(
        pki: Pki, server: str, tmp_path: Path) -> None:
    path = data_config(tmp_path / "config", pki, server)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1) == ["alice", "[]\n"]


# --- errors --------------------------------------------------------------------------------

SECRET = "s3cr3t-t0ken-value"


def _broken(kind: str, tmp_path: Path, pki: Pki) -> tuple[Path, str]:
    """A kubeconfig broken in one way, and what its error must say."""
    path = tmp_path / "config"
    server = "https://127.0.0.1:6443"
    good_user = {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}
    if kind == "missing-file":
        return path, "No such file or directory"
    if kind == "bad-yaml":
        path.write_text(f"users:\n- name: u1\n  user: {{token: {SECRET}\n")
        return path, "not valid YAML: "
    if kind == "not-a-mapping":
        path.write_text("- just\n- a list\n")
        return path, "not a kubeconfig (expected a YAML mapping)"
    if kind == "unknown-context":
        write_config(path, server=server, current="nope")
        return path, "context 'nope' not found (contexts: main)"
    if kind == "no-current-context":
        write_config(path, server=server, current=None)
        return path, "no current-context is set; pass --context"
    if kind == "missing-cluster":
        write_config(path, server=server, extra_contexts=[
            {"name": "x", "context": {"cluster": "gone"}}], current="x")
        return path, "cluster 'gone' (of context 'x') not found"
    if kind == "missing-user":
        write_config(path, server=server, extra_contexts=[
            {"name": "x", "context": {"cluster": "c1", "user": "gone"}}], current="x")
        return path, "user 'gone' (of context 'x') not found"
    if kind == "missing-server":
        write_config(path, server="")
        return path, "cluster 'c1' has no server"
    if kind == "missing-ca-file":
        write_config(path, server=server, cluster={"certificate-authority": "nope/ca.crt"})
        return path, f"certificate-authority file {tmp_path}/nope/ca.crt of cluster 'c1' does not"
    if kind == "bad-base64":
        write_config(path, server=server, user={"client-key-data": "%%%not base64%%%"})
        return path, "client-key-data of user 'u1' is not valid base64"
    if kind == "unreadable-ca":
        (tmp_path / "ca.crt").write_text("garbage")
        write_config(path, server=server, cluster={"certificate-authority": "ca.crt"})
        return path, f"certificate-authority file {tmp_path}/ca.crt of cluster 'c1': cannot load"
    if kind == "key-mismatch":
        write_config(path, server=server, user={**good_user, "client-key": str(pki.other_key)})
        return path, (f"client-certificate file {pki.client_cert} of user 'u1' (with its "
                      "client key): cannot load it")
    if kind == "encrypted-key":
        write_config(path, server=server,
                     user={**good_user, "client-key-data": b64(pki.encrypted_key)})
        return path, "the private key is encrypted"
    if kind == "missing-token-file":
        write_config(path, server=server, user={"tokenFile": "gone"})
        return path, f"token file {tmp_path}/gone: No such file or directory"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "missing-file", "bad-yaml", "not-a-mapping", "unknown-context", "no-current-context",
    "missing-cluster", "missing-user", "missing-server", "missing-ca-file", "bad-base64",
    "unreadable-ca", "key-mismatch", "encrypted-key", "missing-token-file",
])
def test_errors_are_one_line_and_name_the_file(pki: Pki, tmp_path: Path, kind: str) -> None:
    path, needle = _broken(kind, tmp_path, pki)
    with pytest.raises(KubeError) as err:
        Kube.from_config(str(path))
    msg = err.value.message
    assert msg.startswith(f"cannot load kubeconfig {path}: "), msg
    assert needle in msg, msg
    assert "\n" not in msg and SECRET not in msg
