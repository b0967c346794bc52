"""The local sandbox: real Kubernetes control plane and secret backends as loopback processes.

Not shipped with secretsync; used by `make dev`, the pytest fixtures and the demo.
"""

from sandbox.builder import ensure_kubeseal

__all__ = ["ensure_kubeseal"]
