"""Prometheus metrics of the ExternalSecret engine (served by the controller's /metrics).

Backend calls are counted in ``secretsync.backends.metrics`` (by backend, operation and
outcome); here: syncs by result, errors by reason, API writes by kind and verb (the no-churn
figure), single-flight sharing, and the last check time per object — the one thing that
changes on every refresh, kept here instead of in status.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SYNCS = Counter(
    "secretsync_external_syncs_total",
    "ExternalSecret syncs by result (changed, unchanged, error, skipped).",
    ["result"],
)
ERRORS = Counter(
    "secretsync_external_sync_errors_total",
    "ExternalSecret sync failures by reason (the Ready condition's reason).",
    ["reason"],
)
API_WRITES = Counter(
    "secretsync_external_api_writes_total",
    "Writes to the Kubernetes API made by the ExternalSecret engine, by kind and verb.",
    ["kind", "verb"],
)
FETCHES = Counter(
    "secretsync_external_fetches_total",
    "Values requested by ExternalSecrets, by how they were served (backend, shared).",
    ["served"],
)
LAST_CHECK = Gauge(
    "secretsync_external_last_check_timestamp_seconds",
    "Unix time an ExternalSecret was last compared with its backend.",
    ["namespace", "name"],
)
STORE_READY = Gauge(
    "secretsync_store_ready",
    "1 when a SecretStore / ClusterSecretStore validated, 0 when not.",
    ["kind", "namespace", "name"],
)
SYNC_SECONDS = Histogram(
    "secretsync_external_sync_duration_seconds",
    "Time to sync one ExternalSecret (fetch, compare, writes), by result.",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
