"""ClusterExternalSecret decisions (pure): which namespaces it selects, the ExternalSecret it
wants in each, the writes that get there, and its status.

ESO's semantics (v0.16.2), checked against its controller: namespaces are chosen by name
(``spec.namespaces``) OR any label selector (``namespaceSelector``, deprecated, and the list
``namespaceSelectors``); each gets one ExternalSecret named ``externalSecretName`` (default:
the ClusterExternalSecret's name) whose labels and annotations are exactly
``externalSecretMetadata``'s, whose spec is ``externalSecretSpec``, and whose controller
owner reference is the ClusterExternalSecret. An ExternalSecret of that name that it does not
own is never touched: that namespace is reported in ``failedNamespaces``. ExternalSecrets it
owns in namespaces no longer selected (or under a previous name) are deleted.

Two deliberate differences: a namespace being deleted is not a target (nothing can be created
in it; its deletion removes the ExternalSecret), and nothing is written when the
ExternalSecret already is as wanted (no churn).

Plain dicts in and out; no Kubernetes client.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secretsync import api
from secretsync.errors import InvalidInput
from secretsync.reconcile import status as st
from secretsync.reconcile.secrets import owner_reference

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

READY = "Ready"
REASON_PROVISIONED = "Provisioned"
REASON_NAMESPACES_FAILED = "NamespacesFailed"
NOT_OWNED = "ExternalSecret {name} exists and is not owned by this ClusterExternalSecret"
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_MAX_LISTED = 5  # failed namespaces named in the condition message


@dataclass(frozen=True)
class Namespace:
    """What a ClusterExternalSecret needs of a Namespace."""

    labels: Mapping[str, str]
    terminating: bool = False

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Namespace:
        meta = obj.get("metadata") or {}
        return cls(
            labels=dict(meta.get("labels") or {}),
            terminating=bool(meta.get("deletionTimestamp"))
            or (obj.get("status") or {}).get("phase") == "Terminating",
        )


@dataclass(frozen=True)
class Action:
    """One write: ``create`` (``body``), ``patch`` (``patch``: a JSON patch) or ``delete``."""

    op: str
    namespace: str
    name: str
    body: Obj | None = None
    patch: list[Obj] | None = None


@dataclass
class Plan:
    """Everything one reconcile of a ClusterExternalSecret does and reports. ``provisioned``:
    namespaces whose ExternalSecret is (or, once ``actions`` succeed, will be) as wanted."""

    name: str
    actions: list[Action] = field(default_factory=list)
    provisioned: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    invalid: str | None = None


# --- selection ------------------------------------------------------------------------------

def external_secret_name(ces: Mapping[str, Any]) -> str:
    spec = ces.get("spec") or {}
    return str(spec.get("externalSecretName") or (ces.get("metadata") or {}).get("name"))


def selectors(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The deprecated ``namespaceSelector`` (if set) and then ``namespaceSelectors``."""
    out: list[Mapping[str, Any]] = []
    if spec.get("namespaceSelector") is not None:
        out.append(spec["namespaceSelector"])
    out.extend(s for s in spec.get("namespaceSelectors") or [] if s is not None)
    return out


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector with its own rules: an empty selector matches every
    namespace; ``In``/``NotIn`` need values, ``Exists``/``DoesNotExist`` take none (else
    ``InvalidInput``, as the API machinery refuses it)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
        if op not in _OPERATORS:
            raise InvalidInput(f"namespace selector: unknown operator {op!r}")
        if (op in ("In", "NotIn")) != bool(values):
            raise InvalidInput(
                f"namespace selector: operator {op} on {key!r} "
                + ("needs values" if op in ("In", "NotIn") else "takes no values"))
        has = key in labels
        if (op == "In" and not (has and labels[key] in values)) or (
                op == "NotIn" and has and labels[key] in values) or (
                op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def target_namespaces(spec: Mapping[str, Any], namespaces: Mapping[str, Namespace],
                      scope: str | None = None) -> list[str]:
    """The selected namespaces that exist and are not being deleted, sorted; with ``scope``
    (a controller watching one namespace), at most that one. ``InvalidInput`` for a bad
    selector."""
    names = set(spec.get("namespaces") or [])
    sels = selectors(spec)
    out = []
    for ns, info in namespaces.items():
        if info.terminating or (scope is not None and ns != scope):
            continue
        if ns in names or any(label_selector_matches(s, info.labels) for s in sels):
            out.append(ns)
    return sorted(out)


# --- ownership and the wanted ExternalSecret --------------------------------------------------

def controller_of(obj: Mapping[str, Any]) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def _same_owner(ref: Mapping[str, Any], name: str) -> bool:
    group = str(ref.get("apiVersion") or "").partition("/")[0]
    return (group == api.GROUP and ref.get("kind") == api.KIND_CLUSTER_EXTERNAL
            and ref.get("name") == name)


def owned_by(es: Mapping[str, Any], ces_name: str) -> bool:
    """ESO's test: the controller reference names a ClusterExternalSecret of our group with
    this name (not its uid: a re-created ClusterExternalSecret takes its ExternalSecrets
    back)."""
    ref = controller_of(es)
    return ref is not None and _same_owner(ref, ces_name)


def desired_external_secret(ces: Mapping[str, Any], namespace: str) -> Obj:
    spec = ces.get("spec") or {}
    md = spec.get("externalSecretMetadata") or {}
    meta: Obj = {"name": external_secret_name(ces), "namespace": namespace}
    if md.get("labels"):
        meta["labels"] = dict(md["labels"])
    if md.get("annotations"):
        meta["annotations"] = dict(md["annotations"])
    meta["ownerReferences"] = [owner_reference(ces, block_owner_deletion=True)]
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND_EXTERNAL,
        "metadata": meta,
        "spec": copy.deepcopy(spec.get("externalSecretSpec") or {}),
    }


def external_secret_patch(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> list[Obj]:
    """A JSON patch making ``existing`` what ``desired`` says (labels, annotations, spec, our
    controller reference; other owner references kept), or ``[]`` when it already is."""
    meta, want = existing.get("metadata") or {}, desired["metadata"]
    ops: list[Obj] = []
    for key in ("labels", "annotations"):
        if (meta.get(key) or {}) != (want.get(key) or {}):
            ops.append({"op": "add", "path": f"/metadata/{key}", "value": want.get(key) or {}})
    if existing.get("spec") != desired["spec"]:
        ops.append({"op": "add", "path": "/spec", "value": desired["spec"]})
    ours = want["ownerReferences"][0]
    refs = [r for r in meta.get("ownerReferences") or []
            if not _same_owner(r, str(ours["name"]))]
    if ours not in (meta.get("ownerReferences") or []):
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [*refs, ours]})
    return ops


# --- the plan --------------------------------------------------------------------------------

def plan(ces: Mapping[str, Any], namespaces: Mapping[str, Namespace],
         externals: Mapping[Key, Mapping[str, Any]], *, scope: str | None = None) -> Plan:
    """What to write for ``ces`` given the indexed Namespaces and ExternalSecrets (every
    ExternalSecret in ``scope``, or in the cluster)."""
    ces_name = str((ces.get("metadata") or {}).get("name"))
    name = external_secret_name(ces)
    out = Plan(name=name)
    try:
        targets = target_namespaces(ces.get("spec") or {}, namespaces, scope)
    except InvalidInput as exc:
        out.invalid = exc.message
        return out  # nothing created or deleted on a spec the API machinery would refuse
    for ns in targets:
        existing = externals.get((ns, name))
        desired = desired_external_secret(ces, ns)
        if existing is None:
            out.actions.append(Action("create", ns, name, body=desired))
        elif not owned_by(existing, ces_name):
            out.failed[ns] = NOT_OWNED.format(name=name)
            continue
        else:
            ops = external_secret_patch(existing, desired)
            if ops:
                out.actions.append(Action("patch", ns, name, patch=ops))
        out.provisioned.append(ns)
    wanted = {(ns, name) for ns in targets}
    for key, es in sorted(externals.items()):
        ns = key[0]
        if key in wanted or not owned_by(es, ces_name):
            continue
        if (scope is not None and ns != scope) or ns not in namespaces or (
                namespaces[ns].terminating):
            continue  # out of our sight, or going away with its namespace
        out.actions.append(Action("delete", ns, key[1]))
    return out


def concerns(ces: Mapping[str, Any], result: Plan, scope: str | None,
             externals: Iterable[Key] = ()) -> bool:
    """Whether a controller watching only ``scope`` reports on ``ces``: it selects that
    namespace, or was provisioned/failed there, or the plan writes there. A cluster-wide
    controller (``scope`` None) reports on every ClusterExternalSecret."""
    if scope is None:
        return True
    status = ces.get("status") or {}
    failed = {f.get("namespace") for f in status.get("failedNamespaces") or []}
    return (scope in result.provisioned or scope in result.failed or bool(result.actions)
            or scope in (status.get("provisionedNamespaces") or []) or scope in failed
            or any(k[0] == scope for k in externals))


# --- status ----------------------------------------------------------------------------------

def build_status(prev: Mapping[str, Any] | None, result: Plan, *, generation: int | None,
                 now: str) -> Obj:
    """The status for ``result`` (after its writes: failures already moved into
    ``result.failed``). Empty lists are ``None`` so a merge patch removes them, and an
    unchanged status patches nothing (``reconcile.status.status_patch``)."""
    prev = prev or {}
    failed = dict(sorted(result.failed.items()))
    provisioned = sorted(set(result.provisioned) - set(failed))
    if result.invalid is not None:
        ok, reason, message = False, "InvalidSpec", result.invalid
    elif failed:
        names = ", ".join(list(failed)[:_MAX_LISTED]) + (", ..." if len(failed) > _MAX_LISTED
                                                          else "")
        ok, reason = False, REASON_NAMESPACES_FAILED
        message = (f"{len(failed)} namespace(s) failed ({names}); ExternalSecret {result.name}"
                   f" in {len(provisioned)} namespace(s)")
    else:
        ok, reason = True, REASON_PROVISIONED
        message = f"ExternalSecret {result.name} in {len(provisioned)} namespace(s)"
    cond = st.condition(READY, ok, reason, message, now=now,
                        previous=st.find_condition(prev, READY))
    out: Obj = {
        "externalSecretName": result.name,
        "provisionedNamespaces": provisioned or None,
        "failedNamespaces": [{"namespace": ns, "reason": st.one_line(why)}
                             for ns, why in failed.items()] or None,
        "conditions": st.with_condition(prev, cond),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out
