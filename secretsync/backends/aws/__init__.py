"""AWS Secrets Manager and SSM Parameter Store backend, the entry point
``secretsync.backends: aws``.

Why this package exists: it is one backend laid out so each concern has one module.

- ``config``: ``spec.provider.aws`` parsed once into ``AwsSettings``; the auth method is the
  tagged union ``DefaultChain | StaticKeys | WebIdentity``.
- ``auth_static`` (``auth.secretRef``), ``auth_web_identity`` (``auth.jwt``, per-store IRSA),
  ``auth_assume_role`` (``role`` / ``externalID`` over the source credentials): one module per
  auth method; no auth block means botocore's default chain.
- ``clients``: the botocore session and the service + STS clients, built once per store.
- ``secrets_manager``, ``parameter_store``: one module per AWS service (blocking reads/finds).
- ``errors``: botocore errors -> the contract's types (the SDK boundary).
- ``backend``: ``AwsBackend`` (the ``Backend`` contract) and ``create``.
"""

from secretsync.backends.aws.backend import AwsBackend, create

__all__ = ["AwsBackend", "create"]
