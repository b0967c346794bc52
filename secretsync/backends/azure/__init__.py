"""Azure Key Vault backend (``spec.provider.azurekv``), the entry point
``secretsync.backends: azurekv``.

Why this package exists: it keeps the two halves of the backend apart.

- ``credentials``: the Entra ID authority (``environmentType``) and the ``azure.identity``
  credential for ``authType`` (ServicePrincipal, ManagedIdentity, WorkloadIdentity).
- ``backend``: the Key Vault ``SecretClient``, ``AzureBackend`` (the ``Backend`` contract),
  the translation of every Azure error, and ``create``.
"""

from secretsync.backends.azure.backend import AzureBackend, create

__all__ = ["AzureBackend", "create"]
