"""The SealedSecret controller's fixtures for every integration test module: the API-server
client (``kube``), a controller namespace with the deploy/ RBAC and one key (``ctl_ns``),
its ServiceAccount's kubeconfig (``sa_kubeconfig``) and ``start_controller``.

They are defined with the controller's own tests (``test_sealed_controller``); made
available here once, instead of each module that runs a controller importing them by name.
"""

from tests.integration.test_sealed_controller import (  # noqa: F401  (fixtures)
    ctl_ns,
    kube,
    sa_kubeconfig,
    start_controller,
)
