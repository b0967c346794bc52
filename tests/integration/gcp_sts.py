"""A minimal Google Security Token Service and IAM Credentials API on loopback, for the GKE
workload identity tests.

Why: the flow needs two Google endpoints that cannot be reached from here. This server speaks
just enough of both, over HTTPS with its own CA, for ``google-auth``'s unmodified
external-account credentials to run their whole flow and for wrong identities to be refused.
Each rule follows Google's documentation:

- ``POST /v1/token`` — STS token exchange
  (https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token, RFC 8693): a form
  with ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
  ``requested_token_type=urn:ietf:params:oauth:token-type:access_token``,
  ``subject_token_type=urn:ietf:params:oauth:token-type:jwt``, the ``audience`` naming the
  workload identity pool and the identity provider (for a GKE cluster:
  ``identitynamespace:<project>.svc.id.goog:https://container.googleapis.com/v1/projects/<p>/locations/<l>/clusters/<c>``)
  and the ``subject_token``. The token must be signed by a key of the provider's issuer, carry
  that issuer as ``iss``, include the pool in ``aud`` (a GKE ServiceAccount token's audience is
  the pool: https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity) and be
  unexpired; otherwise 400 ``invalid_grant``. A wrong grant or token type is 400
  ``invalid_request``, an unknown provider 400 ``invalid_target``. The answer is
  ``{access_token, issued_token_type, token_type: Bearer, expires_in}``; the token's principal
  is the ServiceAccount's federated identity
  ``principal://iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/subject/ns/<ns>/sa/<sa>``
  (https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity, "principal
  identifiers").
- ``POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`` — IAM Credentials
  (https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken):
  an unknown bearer token is 401 ``UNAUTHENTICATED``; a caller that does not hold
  ``roles/iam.workloadIdentityUser`` on the service account — granted to the member
  ``serviceAccount:<pool>[<ns>/<sa>]`` — is 403 ``PERMISSION_DENIED`` (also when the account
  does not exist, as Google does not say which); else ``{accessToken, expireTime}``.

``authorize`` then decides the Secret Manager emulator's answer for a bearer token: issued
here and held by a principal in ``readers``. Request bodies (tokens) are never logged.
"""

from __future__ import annotations

import datetime
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import grpc  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.integration import entra

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
PROJECT_NUMBER = "123456789012"


@dataclass
class Google(entra.Loopback):
    """The pool's registered cluster, the IAM bindings, the readers, and the server."""

    project: str  # the cluster's project: the pool is <project>.svc.id.goog
    provider: str  # https://container.googleapis.com/v1/projects/<p>/locations/<l>/clusters/<c>
    issuer: str  # the issuer the cluster's tokens carry
    issuer_key_pem: bytes  # its public signing key
    workload_identity_users: dict[str, set[str]] = field(default_factory=dict)  # email->members
    readers: set[str] = field(default_factory=set)  # principals Secret Manager lets read
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> principal
    exchanges: list[str] = field(default_factory=list)  # STS audiences seen
    impersonations: list[str] = field(default_factory=list)  # service accounts asked for
    url: str = ""
    ca_pem: bytes = b""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    _server: ThreadingHTTPServer | None = None

    @property
    def pool(self) -> str:
        return f"{self.project}.svc.id.goog"

    def principal(self, namespace: str, sa: str) -> str:
        return (
            f"principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/"
            f"workloadIdentityPools/{self.pool}/subject/ns/{namespace}/sa/{sa}"
        )

    def member(self, namespace: str, sa: str) -> str:
        return f"serviceAccount:{self.pool}[{namespace}/{sa}]"

    def issue(self, principal: str) -> str:
        token = "ya29." + secrets.token_urlsafe(24)
        self.tokens[token] = principal
        return token

    def subject_of(self, jwt: str) -> str | None:
        """``system:serviceaccount:<ns>:<sa>`` of a valid subject token, else None."""
        try:
            head, body, sig = jwt.split(".")
            header = json.loads(entra._b64url(head))
            claims = json.loads(entra._b64url(body))
        except ValueError:
            return None
        key = serialization.load_pem_public_key(self.issuer_key_pem)
        assert isinstance(key, rsa.RSAPublicKey)
        if header.get("alg") != "RS256":
            return None
        try:
            key.verify(entra._b64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                       hashes.SHA256())
        except InvalidSignature:
            return None
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if claims.get("iss") != self.issuer or self.pool not in audiences:
            return None
        if claims.get("exp", 0) < time.time():
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) else None

    def authorize(self, token: str | None) -> grpc.StatusCode | None:
        """For the Secret Manager emulator: who may call."""
        principal = self.tokens.get(token or "")
        if principal is None:
            return grpc.StatusCode.UNAUTHENTICATED
        return None if principal in self.readers else grpc.StatusCode.PERMISSION_DENIED


class _Handler(entra.JsonHandler):
    google: Google

    def _rpc_error(self, status: int, name: str) -> None:
        self._send(status, {"error": {"code": status, "message": name, "status": name}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        if path == "/v1/token":
            self._sts({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        elif path.startswith("/v1/projects/-/serviceAccounts/") and path.endswith(
            ":generateAccessToken"
        ):
            email = unquote(path.removeprefix("/v1/projects/-/serviceAccounts/")).removesuffix(
                ":generateAccessToken"
            )
            self._impersonate(email)
        else:
            self._send(404, {"error": "not_found"})

    def _sts(self, form: dict[str, str]) -> None:
        g = self.google
        if (
            form.get("grant_type") != EXCHANGE
            or form.get("requested_token_type") != ACCESS_TOKEN
            or form.get("subject_token_type") != JWT
        ):
            self._send(400, {"error": "invalid_request"})
            return
        audience = form.get("audience", "")
        g.exchanges.append(audience)
        if audience != f"identitynamespace:{g.pool}:{g.provider}":
            self._send(400, {"error": "invalid_target"})
            return
        sub = g.subject_of(form.get("subject_token", ""))
        parts = (sub or "").split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            self._send(400, {"error": "invalid_grant"})
            return
        token = g.issue(g.principal(parts[2], parts[3]))
        self._send(200, {"access_token": token, "issued_token_type": ACCESS_TOKEN,
                         "token_type": "Bearer", "expires_in": 3600})

    def _impersonate(self, email: str) -> None:
        g = self.google
        g.impersonations.append(email)
        auth = self.headers.get("Authorization", "")
        principal = g.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or principal is None:
            self._rpc_error(401, "UNAUTHENTICATED")
            return
        # the federated principal's IAM member form: serviceAccount:<pool>[<ns>/<sa>]
        tail = principal.split("/subject/ns/", 1)[-1].split("/sa/")
        member = g.member(tail[0], tail[1]) if len(tail) == 2 else ""
        if member not in g.workload_identity_users.get(email, set()):
            self._rpc_error(403, "PERMISSION_DENIED")
            return
        expire = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        self._send(200, {"accessToken": g.issue(f"serviceAccount:{email}"),
                         "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")})


def start(google: Google) -> Google:
    """Serve ``google`` on a free 127.0.0.1 port in a daemon thread; ``stop()`` ends it. Its
    certificate (``cert_pem`` / ``key_pem``, from CA ``ca_pem``) serves the test's Secret
    Manager emulator too."""
    ca_pem, crt, key = entra._server_cert()
    handler = type("Handler", (_Handler,), {"google": google})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="google-sts", daemon=True).start()
    google.url = f"https://127.0.0.1:{server.server_address[1]}"
    google.ca_pem, google.cert_pem, google.key_pem = ca_pem, crt.read_bytes(), key.read_bytes()
    google._server = server
    return google
