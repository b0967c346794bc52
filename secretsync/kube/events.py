"""The core/v1 Event secretsync posts about an object.

Why this exists: an Event is a notice for ``kubectl describe`` and ``kubectl get events``, not
state: what it says -- a name generated beside the object's, the object it is about, a bounded
message, ``secretsync`` as source and reporting component, this pod as reporting instance --
is a pure rule, kept apart from sending it (``Kube.create_event``) and from the policy that
losing one never fails a reconcile (``Kube.post_event``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from secretsync import clock

MAX_MESSAGE = 1024


def event_body(involved: Mapping[str, Any], *, reason: str, message: str, type_: str,
               component: str) -> dict[str, Any]:
    """The Event about ``involved`` (a full object dict), in the object's namespace (else
    ``default``). The caller guarantees the message holds no secret values."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    now = clock.rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": os.environ.get("HOSTNAME", component),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
