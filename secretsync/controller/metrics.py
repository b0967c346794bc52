"""Prometheus metrics of the SealedSecret controller (default registry, served on /metrics).

Labels carry reasons and outcomes only -- never object contents.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UNSEAL_TOTAL = Counter(
    "secretsync_unseal_total",
    "SealedSecret reconciles, by outcome (ok, error).",
    ["outcome"],
)
UNSEAL_ERRORS = Counter(
    "secretsync_unseal_errors_total",
    "SealedSecrets that could not be unsealed, by condition reason.",
    ["reason"],
)
UNSEAL_SECONDS = Histogram(
    "secretsync_unseal_duration_seconds",
    "Time to reconcile one SealedSecret (decrypt, render, write).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ITEMS_DECRYPTED = Counter(
    "secretsync_items_decrypted_total",
    "Sealed items decrypted (RSA operations that succeeded).",
)
SECRET_WRITES = Counter(
    "secretsync_secret_writes_total",
    "Writes to managed Secrets, by action (create, patch, recreate).",
    ["action"],
)
SECRETS_RESTORED = Counter(
    "secretsync_secrets_restored_total",
    "Managed Secrets restored after being deleted or edited by someone else.",
)
KEY_COUNT = Gauge("secretsync_sealing_keys", "Sealing keys currently loaded.")
IS_LEADER = Gauge("secretsync_leader", "1 while this replica holds the leadership Lease.")
RESYNCS = Counter(
    "secretsync_resyncs_total",
    "Resyncs of the managed Secrets (one LIST compared with what each engine expects).",
)
RESYNC_REPAIRS = Counter(
    "secretsync_resync_repairs_total",
    "Managed Secrets a resync found gone or changed although no watch event said so.",
)
