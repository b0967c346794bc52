"""The ClusterExternalSecret engine: ``ClusterExternalEngine`` (indexes, worker, writes) and
``handlers`` (kopf glue); its decisions are ``reconcile.cluster_external``."""

from secretsync.controller.clusterexternal.engine import ClusterExternalEngine

__all__ = ["ClusterExternalEngine"]
