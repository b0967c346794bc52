"""``spec.provider.vault`` parsed and validated into typed settings (pure: no hvac, no I/O).

Why this module exists: a store spec is parsed here exactly once, into a ``VaultConfig`` whose
``auth`` is a tagged union with one frozen dataclass per auth method, so the login code never
re-checks which fields are set. Every error is a one-line ``StoreInvalid`` naming the field.

Spec (external-secrets.io/v1 field names)::

    server: https://vault:8200        path: secret (the KV mount)     version: v2 | v1
    namespace: team-a                  caBundle: <base64 PEM>
    auth:
      tokenSecretRef: {name, key, namespace}
      appRole: {path: approle, roleId, secretRef: {name, key, namespace}}
      kubernetes: {mountPath: kubernetes, role,
                   serviceAccountRef: {name, audiences}      # a TokenRequest token (wins), or
                   secretRef: {name, key: token, namespace}} # a token kept in a Secret
      jwt: {path: jwt, role,                                  # role: none = the default_role
            secretRef: {name, key, namespace}                 # a JWT kept in a Secret (wins), or
            kubernetesServiceAccountToken:                    # a TokenRequest token
              {serviceAccountRef: {name, audiences}, audiences, expirationSeconds}}
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync.errors import StoreInvalid

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class SecretRef:
    """A ``{name, key, namespace}`` reference to a Kubernetes Secret key."""

    name: str
    key: str
    namespace: str | None = None


@dataclass(frozen=True)
class TokenAuth:
    """``auth.tokenSecretRef``: a static Vault token read from a Secret."""

    token_ref: SecretRef


@dataclass(frozen=True)
class AppRoleAuth:
    """``auth.appRole``: a role id (inline, or ``roleRef`` to a Secret) and a secret id from a
    Secret, logged in at the AppRole mount ``path``."""

    path: str
    role_id: str | SecretRef
    secret_id_ref: SecretRef


@dataclass(frozen=True)
class ServiceAccountToken:
    """A TokenRequest for a ServiceAccount: which one, for which audiences, how long."""

    name: str
    namespace: str | None = None
    audiences: tuple[str, ...] = ()
    expiration_seconds: int | None = None  # None = the controller's default


@dataclass(frozen=True)
class KubernetesAuth:
    """``auth.kubernetes``: a ServiceAccount token (a TokenRequest, or one kept in a Secret),
    exchanged for ``role``. Exactly one of ``service_account`` / ``token_ref`` is set."""

    mount: str
    role: str
    service_account: ServiceAccountToken | None = None
    token_ref: SecretRef | None = None


@dataclass(frozen=True)
class JwtAuth:
    """``auth.jwt``: a JWT (kept in a Secret, or a TokenRequest token) exchanged at the JWT/OIDC
    mount ``path`` for ``role`` (empty: the mount's ``default_role``). Exactly one of
    ``token_ref`` / ``service_account`` is set."""

    path: str
    role: str
    token_ref: SecretRef | None = None
    service_account: ServiceAccountToken | None = None


VaultAuth = TokenAuth | AppRoleAuth | KubernetesAuth | JwtAuth
_KINDS = ("tokenSecretRef", "appRole", "kubernetes", "jwt")


@dataclass(frozen=True)
class VaultConfig:
    """The parsed, validated provider block."""

    server: str
    mount: str | None
    kv_version: int
    namespace: str | None
    ca_pem: bytes | None
    auth: VaultAuth
    timeout: float = DEFAULT_TIMEOUT


def _ref(block: Any, what: str, default_key: str | None = None) -> SecretRef:
    if not isinstance(block, Mapping) or not block.get("name"):
        raise StoreInvalid(f"{what}: needs name and key")
    key = block.get("key") or default_key
    if not key:
        raise StoreInvalid(f"{what}: needs name and key")
    ns = block.get("namespace")
    return SecretRef(str(block["name"]), str(key), str(ns) if ns else None)


def _sa(sa: Any, what: str, extra_audiences: Any = None, expiration: Any = None,
        default_audiences: tuple[str, ...] = ()) -> ServiceAccountToken:
    if not isinstance(sa, Mapping) or not sa.get("name"):
        raise StoreInvalid(f"{what}.name is required")
    audiences = [str(a) for a in (sa.get("audiences") or [])]
    if not isinstance(extra_audiences, list | tuple | type(None)):
        raise StoreInvalid(f"{what}: audiences must be a list")
    audiences += [str(a) for a in (extra_audiences or []) if str(a) not in audiences]
    seconds: int | None = None
    if expiration is not None:
        if isinstance(expiration, bool) or not isinstance(expiration, int) or expiration < 600:
            raise StoreInvalid(f"{what}: expirationSeconds must be an integer of at least 600")
        seconds = expiration
    return ServiceAccountToken(
        name=str(sa["name"]),
        namespace=str(sa["namespace"]) if sa.get("namespace") else None,
        audiences=tuple(audiences) or default_audiences,
        expiration_seconds=seconds,
    )


def _approle(ar: Mapping[str, Any], prefix: str) -> AppRoleAuth:
    if not ar.get("secretRef"):
        raise StoreInvalid(f"{prefix}.secretRef is required")
    role_ref = _ref(ar["roleRef"], f"{prefix}.roleRef") if ar.get("roleRef") else None
    role_id = str(ar["roleId"]) if ar.get("roleId") else role_ref  # roleId wins
    if role_id is None:
        raise StoreInvalid(f"{prefix} needs roleId or roleRef")
    return AppRoleAuth(
        path=str(ar.get("path") or "approle").strip("/"),
        role_id=role_id,
        secret_id_ref=_ref(ar["secretRef"], f"{prefix}.secretRef"),
    )


def _kubernetes(k8s: Mapping[str, Any], prefix: str) -> KubernetesAuth:
    if not k8s.get("role"):
        raise StoreInvalid(f"{prefix}.role is required")
    mount = str(k8s.get("mountPath") or "kubernetes").strip("/")
    if k8s.get("serviceAccountRef"):  # wins over secretRef, as in ESO
        sa = _sa(k8s["serviceAccountRef"], f"{prefix}.serviceAccountRef")
        return KubernetesAuth(mount=mount, role=str(k8s["role"]), service_account=sa)
    if k8s.get("secretRef"):
        # a Secret holding a ServiceAccount token; the key defaults to ``token``
        ref = _ref(k8s["secretRef"], f"{prefix}.secretRef", default_key="token")
        return KubernetesAuth(mount=mount, role=str(k8s["role"]), token_ref=ref)
    raise StoreInvalid(f"{prefix} needs serviceAccountRef or secretRef")


def _jwt(jwt: Mapping[str, Any], prefix: str) -> JwtAuth:
    path = str(jwt.get("path") or "jwt").strip("/")
    role = str(jwt.get("role") or "")
    if jwt.get("secretRef"):  # wins over kubernetesServiceAccountToken, as in ESO
        ref = _ref(jwt["secretRef"], f"{prefix}.secretRef")
        return JwtAuth(path=path, role=role, token_ref=ref)
    kst = jwt.get("kubernetesServiceAccountToken")
    if not kst:
        raise StoreInvalid(f"{prefix} needs secretRef or kubernetesServiceAccountToken")
    where = f"{prefix}.kubernetesServiceAccountToken"
    if not isinstance(kst, Mapping):
        raise StoreInvalid(f"{where} must be an object")
    sa = _sa(
        kst.get("serviceAccountRef"),
        f"{where}.serviceAccountRef",
        extra_audiences=kst.get("audiences"),
        expiration=kst.get("expirationSeconds"),
        default_audiences=("vault",),  # ESO's default audience for this token
    )
    return JwtAuth(path=path, role=role, service_account=sa)


def _auth(auth: Any, what: str) -> VaultAuth:
    if not isinstance(auth, Mapping):
        raise StoreInvalid(f"{what}: spec.provider.vault.auth is required")
    kinds = [k for k in _KINDS if auth.get(k)]
    if len(kinds) != 1:
        raise StoreInvalid(
            f"{what}: spec.provider.vault.auth needs exactly one of {', '.join(_KINDS)} "
            f"(got {kinds or 'none'})"
        )
    kind = kinds[0]
    prefix = f"{what}: spec.provider.vault.auth.{kind}"
    if kind == "tokenSecretRef":
        return TokenAuth(token_ref=_ref(auth[kind], prefix))
    if not isinstance(auth[kind], Mapping):
        raise StoreInvalid(f"{prefix} must be an object")
    if kind == "appRole":
        return _approle(auth[kind], prefix)
    if kind == "jwt":
        return _jwt(auth[kind], prefix)
    return _kubernetes(auth[kind], prefix)


def parse_config(provider: Mapping[str, Any], *, what: str) -> VaultConfig:
    """Validate ``spec.provider.vault`` (pure). Raises StoreInvalid naming the bad field."""
    server = provider.get("server")
    if not isinstance(server, str) or not re.match(r"^https?://", server):
        raise StoreInvalid(f"{what}: spec.provider.vault.server must be an http(s) URL")
    version = str(provider.get("version") or "v2")
    if version not in ("v1", "v2"):
        raise StoreInvalid(f"{what}: spec.provider.vault.version must be v1 or v2")
    mount = provider.get("path")
    mount = str(mount).strip("/") if mount else None
    ca_pem: bytes | None = None
    if provider.get("caBundle"):
        try:
            ca_pem = base64.b64decode(str(provider["caBundle"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise StoreInvalid(f"{what}: spec.provider.vault.caBundle is not base64") from exc
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise StoreInvalid(f"{what}: spec.provider.vault.caBundle holds no PEM certificate")
    return VaultConfig(
        server=server.rstrip("/"),
        mount=mount,
        kv_version=2 if version == "v2" else 1,
        namespace=str(provider["namespace"]) if provider.get("namespace") else None,
        ca_pem=ca_pem,
        auth=_auth(provider.get("auth"), what),
    )
