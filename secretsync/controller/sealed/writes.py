"""The SealedSecret engine's API writes, as functions of their inputs (no engine state).

Kept apart from the engine so its class holds state and decisions, and these hold the
request sequences: the Secret write with its re-read after a 409/404, the ownership check,
the status patch and the Event. Each runs in one worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync import api
from secretsync.controller.sealed.lane import EventSpec
from secretsync.errors import KubeConflict, KubeNotFound
from secretsync.kube import Kube
from secretsync.reconcile import sealed as rs
from secretsync.reconcile.secrets import SecretPlan, ownership, plan_secret

Ref = tuple[str, str, str]  # (apiVersion, namespace, name) of a SealedSecret


def ref_of(obj: Mapping[str, Any]) -> Ref:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(meta.get("namespace")), str(meta.get("name")))


def what(obj: Mapping[str, Any]) -> str:
    """How logs name an object: ``SealedSecret ns/name``."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'SealedSecret')} {meta.get('namespace')}/{meta.get('name')}"


def gvp(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    group, _, version = str(obj.get("apiVersion")).partition("/")
    return group, version, api.PLURAL_SEALED


@dataclass
class Written:
    plan: SecretPlan
    secret: dict[str, Any] | None = None  # the Secret as the API server returned it


def write_secret(kube: Kube, obj: Mapping[str, Any], desired: dict[str, Any],
                 plan: SecretPlan) -> Written:
    """In one worker thread: the Secret write, re-reading it after a 409/404 and planning
    again."""
    ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    for attempt in range(4):
        if attempt > 0:
            existing = kube.get_secret(ns, name)
            check_owner(existing, obj)
            plan = plan_secret(existing, desired)
        try:
            if plan.action == "create":
                return Written(plan, kube.create_secret(ns, desired))
            if plan.action == "patch":
                assert plan.patch is not None
                return Written(plan, kube.patch_secret(ns, name, plan.patch))
            if plan.action == "recreate":
                kube.delete_secret(ns, name)
                return Written(plan, kube.create_secret(ns, desired))
            return Written(plan)
        except (KubeConflict, KubeNotFound):
            continue  # created, changed or deleted under us: look again
    raise KubeConflict(f"Secret {ns}/{name} kept changing while being written")


def check_owner(existing: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> None:
    if existing is not None and ownership(existing, obj) == "foreign":
        meta = existing.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        raise rs.SealFailure(
            f"Secret {ns}/{name} exists and is not managed by secretsync; annotate it "
            f'{api.ANN_MANAGED}="true" to hand it over',
            reason=rs.REASON_UNMANAGED,
        )


def write_status(kube: Kube, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    group, version, plural = gvp(obj)
    kube.patch_custom_status(group, version, plural, meta.get("namespace"),
                             str(meta.get("name")), status)


def post_event(kube: Kube, obj: Mapping[str, Any], spec: EventSpec) -> None:
    reason, message, warning = spec
    kube.post_event(obj, reason=reason, message=message, warning=warning)
