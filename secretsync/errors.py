"""One exception family for the whole project.

Every error says what went wrong *and* what to do about it, in one line, and never carries
secret material (plaintext, decrypted bytes, backend response bodies). Callers at the edges
(CLI, kopf handlers) turn these into exit codes, status conditions and events; anything that
is not a ``SecretSyncError`` is a bug.
"""

from __future__ import annotations


class SecretSyncError(Exception):
    """Base class. ``reason`` is a machine-readable CamelCase word used in status conditions."""

    reason = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


# --- input and configuration -------------------------------------------------------------


class InvalidInput(SecretSyncError):
    """A document, file or spec is malformed (bad YAML, not a Secret, missing field...)."""

    reason = "InvalidSpec"


class InvalidTemplate(SecretSyncError):
    """A template could not be rendered (syntax error, undefined name...)."""

    reason = "InvalidTemplate"


# --- crypto ------------------------------------------------------------------------------


class CryptoError(SecretSyncError):
    """Base for sealing/unsealing failures."""

    reason = "DecryptFailed"


class CiphertextTooShort(CryptoError):
    """The sealed item is truncated or not a sealed item at all."""


class DecryptionFailed(CryptoError):
    """No available key could decrypt the item (wrong key, wrong scope, or tampered data)."""


class KeyError_(CryptoError):
    """A key or certificate could not be loaded or is unsuitable."""

    reason = "InvalidKey"


# --- backends ----------------------------------------------------------------------------


class BackendError(SecretSyncError):
    """Base for errors raised by secret backends, already translated from the SDK."""

    reason = "BackendError"


class SecretNotFound(BackendError):
    """The referenced secret, version or property does not exist in the backend."""

    reason = "SecretNotFound"


class BackendAuthError(BackendError):
    """The backend rejected our credentials or we are not allowed to read this secret."""

    reason = "BackendAuthFailed"


class BackendUnavailable(BackendError):
    """The backend could not be reached, timed out or throttled us; retry later."""

    reason = "BackendUnavailable"


class BackendNotInstalled(BackendError):
    """The store names a backend whose optional dependencies are not installed."""

    reason = "BackendNotInstalled"


class StoreInvalid(BackendError):
    """A SecretStore spec is invalid or may not be used from this namespace."""

    reason = "InvalidStore"


# --- Kubernetes API (translated in secretsync.kube) ----------------------------------------


class KubeError(SecretSyncError):
    """The Kubernetes API refused or failed a request (already translated from the client)."""

    reason = "KubeApiError"

    def __init__(self, message: str, *, status: int = 0, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.status = status


class KubeNotFound(KubeError):
    """The object (or its API) does not exist."""

    reason = "NotFound"


class KubeConflict(KubeError):
    """Create of an existing object, or a write based on a stale resourceVersion."""

    reason = "Conflict"


class KubeForbidden(KubeError):
    """RBAC (or authentication) refused the request; check the ServiceAccount's roles."""

    reason = "Forbidden"


class KubeInvalid(KubeError):
    """The API server rejected the object as invalid (422) or the request as malformed."""

    reason = "Invalid"
