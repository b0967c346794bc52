"""Pure reconcile functions: (spec, keys or fetched values, now) -> desired Secret + status.

Nothing here imports kopf, the Kubernetes client or a backend SDK; every decision is a
function of plain dicts so it can be tested without a cluster.
"""
