"""The only code that talks to the Kubernetes API.

Objects go in and come out as plain JSON dicts (camelCase, exactly what the API server
sends), so the pure ``reconcile`` layer never sees client model classes. Failures are the
``KubeError`` family (404 -> ``None`` for reads, ``KubeNotFound`` for writes), whose texts carry
the API server's status message, never request bodies (which may hold secret data). The
controller calls it from ``asyncio.to_thread``; the CLI calls it directly.

Why a package: the parts change for different reasons --

- ``client``: :class:`Kube`, the typed calls (Secrets, ConfigMaps, custom objects, Events,
  Leases, TokenRequests, server-side apply); ``paths``, ``events`` and ``listing``: the pure
  rules they use (REST paths, what an Event says, paged LISTs);
- ``transport``: our own keep-alive ``http.client`` connections and one request's URL,
  headers and auth; ``errors``: an error answer -> its ``KubeError``;
- ``config``: where the API server is and how to authenticate, read without the
  ``kubernetes`` package; ``fallback``: the set-ups we do not reproduce, through that package
  (the only module that imports it).

Import the API from here: ``from secretsync.kube import Kube``.
"""

from secretsync.errors import KubeConflict, KubeError, KubeForbidden, KubeInvalid, KubeNotFound
from secretsync.kube.client import Kube
from secretsync.kube.paths import object_path
from secretsync.kube.transport import Connection, Obj

__all__ = [
    "Connection",
    "Kube",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeInvalid",
    "KubeNotFound",
    "Obj",
    "object_path",
]
