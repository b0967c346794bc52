"""The SealedSecret engine: ``SealedEngine`` (state and reconcile), ``handlers`` (kopf glue),
``start`` (the cold start before kopf watches), ``writes`` (API request sequences), ``lane``
(statuses and Events after the Secrets) and ``burst`` (Secret writes grouped in a backlog)."""

from secretsync.controller.sealed.engine import SealedEngine, sealed_groups

__all__ = ["SealedEngine", "sealed_groups"]
