"""HashiCorp Vault / OpenBao backend (KV v1 and v2), the entry point ``secretsync.backends: vault``.

Why this package exists: it is one backend laid out so each concern has one module.

- ``config``: ``spec.provider.vault`` parsed once into a ``VaultConfig`` whose ``auth`` is a
  tagged union (``TokenAuth | AppRoleAuth | KubernetesAuth | JwtAuth``). Pure; no hvac.
- ``auth_token``, ``auth_approle``, ``auth_kubernetes``, ``auth_jwt``: one module per auth
  method, each turning its config into a Vault token.
- ``login``: what an auth method hands back and where its JWT comes from (a TokenRequest or
  a Secret), shared by the auth modules and the backend.
- ``backend``: the hvac client, the token lifecycle (reuse, renew, re-login), the KV reads,
  lists and finds, and the translation of every hvac / requests error.
"""

from secretsync.backends.vault.backend import VaultBackend, create

__all__ = ["VaultBackend", "create"]
