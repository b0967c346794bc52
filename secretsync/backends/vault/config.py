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
      kubernetes: {mountPath: kubernetes, role, serviceAccountRef: {name, audiences}}
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
class KubernetesAuth:
    """``auth.kubernetes``: a TokenRequest token of a ServiceAccount, exchanged for ``role``."""

    mount: str
    role: str
    sa_name: str
    sa_namespace: str | None = None
    sa_audiences: tuple[str, ...] = ()


VaultAuth = TokenAuth | AppRoleAuth | KubernetesAuth


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


def _ref(block: Any, what: str) -> SecretRef:
    if not isinstance(block, Mapping) or not block.get("name") or not block.get("key"):
        raise StoreInvalid(f"{what}: needs name and key")
    ns = block.get("namespace")
    return SecretRef(str(block["name"]), str(block["key"]), str(ns) if ns else None)


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
    sa = k8s.get("serviceAccountRef")
    if not k8s.get("role"):
        raise StoreInvalid(f"{prefix}.role is required")
    if not isinstance(sa, Mapping) or not sa.get("name"):
        raise StoreInvalid(f"{prefix}.serviceAccountRef.name is required")
    return KubernetesAuth(
        mount=str(k8s.get("mountPath") or "kubernetes").strip("/"),
        role=str(k8s["role"]),
        sa_name=str(sa["name"]),
        sa_namespace=str(sa["namespace"]) if sa.get("namespace") else None,
        sa_audiences=tuple(str(a) for a in (sa.get("audiences") or [])),
    )


def _auth(auth: Any, what: str) -> VaultAuth:
    if not isinstance(auth, Mapping):
        raise StoreInvalid(f"{what}: spec.provider.vault.auth is required")
    kinds = [k for k in ("tokenSecretRef", "appRole", "kubernetes") if auth.get(k)]
    if len(kinds) != 1:
        raise StoreInvalid(
            f"{what}: spec.provider.vault.auth needs exactly one of tokenSecretRef, appRole, "
            f"kubernetes (got {kinds or 'none'})"
        )
    kind = kinds[0]
    prefix = f"{what}: spec.provider.vault.auth.{kind}"
    if kind == "tokenSecretRef":
        return TokenAuth(token_ref=_ref(auth[kind], prefix))
    if kind == "appRole":
        return _approle(auth[kind], prefix)
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
