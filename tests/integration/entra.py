"""A minimal Microsoft Entra ID token service on loopback, for the Azure Key Vault tests.

Why: the sandbox's Key Vault accepts any bearer token, but ``azure-identity`` only produces a
token by talking to an identity endpoint, which cannot be reached from here. This server
speaks just enough of the real protocols, over HTTPS with its own CA, for the unmodified SDK
credentials to run their whole flow and for wrong credentials to be refused:

- ``POST /{tenant}/oauth2/v2.0/token`` (client-credentials grant), used by
  ``ClientSecretCredential`` (``client_secret``), ``CertificateCredential`` (an RS256/PS256
  ``client_assertion`` signed with the registered certificate's key, checked here) and
  ``WorkloadIdentityCredential`` (the federated token from the token file as the assertion).
  Unknown clients or wrong secrets get 401 ``invalid_client`` (AADSTS7000215), like Entra.
  A client registered with ``FederatedCredential`` s (workload identity federation) takes an
  external JWT as ``client_assertion`` and checks it the way Entra documents it: signed by the
  issuer's key, ``iss`` / ``sub`` / ``aud`` equal to one federated credential's issuer, subject
  and audience, not expired (see ``FederatedCredential``).
- ``GET /msi/token`` (the App Service managed-identity protocol that ``ManagedIdentityCredential``
  uses when ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER`` are set), checking the header secret.

Request bodies (secrets) are never logged.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def self_signed_client_cert(cn: str = "sp-client") -> tuple[bytes, x509.Certificate]:
    """(PEM of certificate + private key, certificate): what an SP certificate Secret holds."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, cert


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential on an app registration. Entra accepts an external
    token for the app when its ``iss``, ``sub`` and ``aud`` match the credential's issuer,
    subject and audience exactly and it is validly signed by the issuer (whose keys Entra
    finds through the issuer's OpenID discovery document — here the key is given directly)
    and unexpired: https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation
    and, for the request itself (``client_assertion`` with ``client_assertion_type``
    ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``),
    https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
    ("Third case: Access token request with a federated credential"). The default audience
    is the one Entra recommends: ``api://AzureADTokenExchange``."""

    issuer: str
    subject: str
    public_key_pem: bytes
    audience: str = "api://AzureADTokenExchange"


def check_federated(cred: FederatedCredential, assertion: str) -> bool:
    """Does ``assertion`` (a compact RS256 JWT) satisfy ``cred``?"""
    try:
        head, body, sig = assertion.split(".")
        header = json.loads(_b64url(head))
        claims = json.loads(_b64url(body))
    except ValueError:
        return False
    if header.get("alg") != "RS256":
        return False
    public = serialization.load_pem_public_key(cred.public_key_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        public.verify(_b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                      hashes.SHA256())
    except InvalidSignature:
        return False
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    now = time.time()
    return (
        claims.get("iss") == cred.issuer
        and claims.get("sub") == cred.subject
        and cred.audience in audiences
        and claims.get("exp", 0) > now
        and claims.get("nbf", 0) <= now + 60
    )


class Loopback:
    """A loopback identity server's lifetime (this module's and ``gcp_sts``'s)."""

    _server: ThreadingHTTPServer | None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """What the loopback identity servers' handlers share: HTTP/1.1, quiet, JSON answers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class Entra(Loopback):
    """Registered clients and the running server's address and CA."""

    secrets: dict[str, str] = field(default_factory=dict)  # client id -> secret
    certificates: dict[str, x509.Certificate] = field(default_factory=dict)
    federated: dict[str, str] = field(default_factory=dict)  # client id -> federated token
    # client id -> its federated identity credentials (workload identity federation)
    federations: dict[str, list[FederatedCredential]] = field(default_factory=dict)
    tenants: set[str] = field(default_factory=set)  # when not empty: the only tenants served
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16))
    url: str = ""
    ca_pem: bytes = b""
    issued: int = 0
    _server: ThreadingHTTPServer | None = None

    def token(self) -> dict[str, Any]:
        self.issued += 1
        return {
            "token_type": "Bearer",
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": "entra-" + secrets.token_urlsafe(24),
        }

    def check_assertion(self, client_id: str, assertion: str) -> bool:
        if self.federated.get(client_id) == assertion:
            return True
        if any(check_federated(c, assertion) for c in self.federations.get(client_id, [])):
            return True
        cert = self.certificates.get(client_id)
        if cert is None:
            return False
        try:
            head, body, sig = assertion.split(".")
            header = json.loads(_b64url(head))
            claims = json.loads(_b64url(body))
        except ValueError:
            return False
        if "x5t#S256" in header:
            known = _b64url(header["x5t#S256"]) == cert.fingerprint(hashes.SHA256())
        else:  # x5t is defined as the SHA-1 thumbprint
            known = _b64url(header.get("x5t", "")) == cert.fingerprint(hashes.SHA1())
        if not known:
            return False
        if claims.get("sub") != client_id or claims.get("exp", 0) < time.time():
            return False
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        signed = f"{head}.{body}".encode()
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            if header.get("alg") == "PS256"
            else padding.PKCS1v15()
        )
        try:
            public.verify(_b64url(sig), signed, pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class _Handler(JsonHandler):
    entra: Entra

    def _refuse(self) -> None:
        self._send(
            401,
            {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215],
            },
        )

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not urlsplit(self.path).path.endswith("/oauth2/v2.0/token"):
            self._send(404, {"error": "not_found"})
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        client = form.get("client_id", "")
        tenant = urlsplit(self.path).path.strip("/").split("/")[0]
        if self.entra.tenants and tenant not in self.entra.tenants:
            self._send(400, {"error": "invalid_request", "error_description": "AADSTS90002"})
            return
        if form.get("grant_type") != "client_credentials" or not client:
            self._send(400, {"error": "invalid_request", "error_description": "AADSTS900144"})
            return
        e = self.entra
        if "client_secret" in form:
            ok = e.secrets.get(client) == form["client_secret"]
        else:
            ok = e.check_assertion(client, form.get("client_assertion", ""))
        if not ok:
            self._refuse()
            return
        self._send(200, e.token())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/msi/token":
            self._send(404, {"error": "not_found"})
            return
        if self.headers.get("X-IDENTITY-HEADER") != self.entra.identity_header:
            self._send(401, {"error": "unauthorized", "error_description": "bad identity header"})
            return
        tok = self.entra.token()
        resource = parse_qs(url.query).get("resource", [""])[0]
        self._send(
            200,
            {
                "access_token": tok["access_token"],
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
            },
        )


def _server_cert() -> tuple[bytes, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (CA PEM, cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("entra-test-ca"))
        .issuer_name(_name("entra-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    d = Path(tempfile.mkdtemp(prefix="entra-"))
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), d / "tls.crt", d / "tls.key"


def start(entra: Entra | None = None) -> Entra:
    """Serve ``entra`` on a free 127.0.0.1 port in a daemon thread; ``stop()`` ends it."""
    e = entra or Entra()
    ca_pem, crt, key = _server_cert()
    handler = type("Handler", (_Handler,), {"entra": e})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="entra", daemon=True).start()
    e.url = f"https://127.0.0.1:{server.server_address[1]}"
    e.ca_pem = ca_pem
    e._server = server
    return e
