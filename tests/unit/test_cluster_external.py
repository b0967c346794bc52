"""ClusterExternalSecret decisions (``reconcile.cluster_external``) and the engine's event
handling against a fake API: selection by name and label selectors (Kubernetes' rules), the
wanted ExternalSecret, the write plan (no churn, a foreign ExternalSecret left alone, removal
from namespaces no longer selected or under an old name), the status, the CRD schema."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from secretsync import api
from secretsync.controller.clusterexternal.engine import ClusterExternalEngine
from secretsync.errors import InvalidInput
from secretsync.reconcile import cluster_external as cx
from secretsync.reconcile.status import status_patch

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T01:00:00Z"
ES_SPEC = {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
           "data": [{"secretKey": "k", "remoteRef": {"key": "a"}}]}


def ces(name: str = "shared", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"externalSecretSpec": copy.deepcopy(ES_SPEC), **spec}
    return {"apiVersion": api.API_VERSION, "kind": api.KIND_CLUSTER_EXTERNAL,
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1}, "spec": body}


def nss(**labels: dict[str, str]) -> dict[str, cx.Namespace]:
    return {name: cx.Namespace(labels=lab) for name, lab in labels.items()}


def apply(es: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(es)
    for op in ops:
        assert op["op"] == "add"
        *parents, last = op["path"].strip("/").split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = copy.deepcopy(op["value"])
    return out


def run_plan(obj: dict[str, Any], namespaces: dict[str, cx.Namespace],
             externals: dict[cx.Key, dict[str, Any]], scope: str | None = None) -> cx.Plan:
    """The plan, applied to ``externals`` (as the engine's writes would)."""
    result = cx.plan(obj, namespaces, externals, scope=scope)
    for a in result.actions:
        key = (a.namespace, a.name)
        if a.op == "create":
            assert a.body is not None
            externals[key] = copy.deepcopy(a.body)
        elif a.op == "patch":
            assert a.patch
            externals[key] = apply(externals[key], a.patch)
        else:
            del externals[key]
    return result


# --- selection -------------------------------------------------------------------------------

def test_names_or_any_selector() -> None:
    namespaces = nss(a={"team": "x"}, b={"team": "y"}, c={}, d={"env": "prod"})
    spec = {"namespaces": ["c"], "namespaceSelectors": [{"matchLabels": {"team": "x"}}],
            "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}
    assert cx.target_namespaces(spec, namespaces) == ["a", "c", "d"]
    assert cx.target_namespaces({}, namespaces) == []  # nothing chosen: nowhere


def test_empty_selector_matches_every_namespace() -> None:
    assert cx.target_namespaces({"namespaceSelectors": [{}]}, nss(a={}, b={"x": "1"})) == ["a", "b"]


@pytest.mark.parametrize(("expr", "labels", "want"), [
    ({"key": "t", "operator": "In", "values": ["x", "y"]}, {"t": "y"}, True),
    ({"key": "t", "operator": "In", "values": ["x"]}, {}, False),
    ({"key": "t", "operator": "NotIn", "values": ["x"]}, {}, True),
    ({"key": "t", "operator": "NotIn", "values": ["x"]}, {"t": "x"}, False),
    ({"key": "t", "operator": "DoesNotExist"}, {"t": "x"}, False),
])
def test_expressions(expr: dict[str, Any], labels: dict[str, str], want: bool) -> None:
    assert cx.label_selector_matches({"matchExpressions": [expr]}, labels) is want


@pytest.mark.parametrize("expr", [
    {"key": "t", "operator": "In"},
    {"key": "t", "operator": "Exists", "values": ["x"]},
    {"key": "t", "operator": "Near", "values": ["x"]},
])
def test_invalid_selector_is_invalid_spec_and_writes_nothing(expr: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        cx.label_selector_matches({"matchExpressions": [expr]}, {"t": "x"})
    owned = cx.desired_external_secret(ces(), "a")
    result = cx.plan(ces(namespaceSelectors=[{"matchExpressions": [expr]}]), nss(a={}),
                     {("a", "shared"): owned})
    assert result.invalid and not result.actions
    status = cx.build_status(None, result, generation=1, now=NOW)
    assert status["conditions"][0]["reason"] == "InvalidSpec"


def test_terminating_namespaces_and_scope() -> None:
    namespaces = {"a": cx.Namespace({"x": "1"}), "b": cx.Namespace({"x": "1"}, terminating=True),
                  "c": cx.Namespace({"x": "1"})}
    spec = {"namespaceSelectors": [{"matchLabels": {"x": "1"}}]}
    assert cx.target_namespaces(spec, namespaces) == ["a", "c"]
    assert cx.target_namespaces(spec, namespaces, scope="c") == ["c"]
    assert cx.Namespace.of({"metadata": {"labels": {"x": "1"}},
                            "status": {"phase": "Terminating"}}).terminating


# --- the wanted ExternalSecret and the plan ---------------------------------------------------

def test_desired_external_secret() -> None:
    obj = ces(externalSecretName="app-creds",
              externalSecretMetadata={"labels": {"l": "1"}, "annotations": {"a": "2"}})
    es = cx.desired_external_secret(obj, "team-a")
    assert es["metadata"]["name"] == "app-creds" and es["metadata"]["namespace"] == "team-a"
    assert es["metadata"]["labels"] == {"l": "1"} and es["metadata"]["annotations"] == {"a": "2"}
    assert es["metadata"]["ownerReferences"] == [{
        "apiVersion": api.API_VERSION, "kind": api.KIND_CLUSTER_EXTERNAL, "name": "shared",
        "uid": "uid-shared", "controller": True, "blockOwnerDeletion": True}]
    assert es["spec"] == ES_SPEC and es["spec"] is not obj["spec"]["externalSecretSpec"]
    assert cx.owned_by(es, "shared") and not cx.owned_by(es, "other")


def test_create_then_no_churn_then_spec_change() -> None:
    obj = ces(namespaceSelectors=[{"matchLabels": {"x": "1"}}])
    namespaces = nss(a={"x": "1"}, b={"x": "1"}, c={})
    externals: dict[cx.Key, dict[str, Any]] = {}
    first = run_plan(obj, namespaces, externals)
    assert [(a.op, a.namespace) for a in first.actions] == [("create", "a"), ("create", "b")]
    assert first.provisioned == ["a", "b"] and not first.failed
    assert cx.plan(obj, namespaces, externals).actions == []  # nothing written when equal
    obj["spec"]["externalSecretSpec"]["refreshInterval"] = "5m"
    obj["spec"]["externalSecretMetadata"] = {"labels": {"team": "x"}}
    second = run_plan(obj, namespaces, externals)
    assert {a.op for a in second.actions} == {"patch"}
    assert externals[("a", "shared")]["spec"]["refreshInterval"] == "5m"
    assert externals[("a", "shared")]["metadata"]["labels"] == {"team": "x"}
    assert cx.plan(obj, namespaces, externals).actions == []


def test_patch_replaces_foreign_metadata_keeps_other_owners() -> None:
    obj = ces(namespaces=["a"])
    es = cx.desired_external_secret(obj, "a")
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "u"}
    es["metadata"]["ownerReferences"].append(other)
    es["metadata"]["annotations"] = {"kubectl.kubernetes.io/x": "y"}
    es["spec"]["refreshInterval"] = "1s"
    ops = cx.external_secret_patch(es, cx.desired_external_secret(obj, "a"))
    fixed = apply(es, ops)
    assert fixed["metadata"]["annotations"] == {} and fixed["spec"] == ES_SPEC
    assert other in fixed["metadata"]["ownerReferences"]
    assert cx.external_secret_patch(fixed, cx.desired_external_secret(obj, "a")) == []


def test_foreign_external_secret_is_never_touched() -> None:
    obj = ces(namespaces=["a", "b"])
    foreign = {"metadata": {"name": "shared", "namespace": "b", "uid": "f"}, "spec": {}}
    other_owner = cx.desired_external_secret(ces("else"), "b")
    for existing in (foreign, other_owner):
        externals = {("b", "shared"): copy.deepcopy(existing)}
        result = run_plan(obj, nss(a={}, b={}), externals)
        assert [(a.op, a.namespace) for a in result.actions] == [("create", "a")]
        assert "not owned" in result.failed["b"] and externals[("b", "shared")] == existing
        status = cx.build_status(None, result, generation=1, now=NOW)
        assert status["provisionedNamespaces"] == ["a"]
        assert status["failedNamespaces"] == [{"namespace": "b", "reason": result.failed["b"]}]
        assert status["conditions"][0]["status"] == "False"
        assert status["conditions"][0]["reason"] == "NamespacesFailed"


def test_removed_from_namespaces_no_longer_selected_and_old_names() -> None:
    obj = ces(namespaceSelectors=[{"matchLabels": {"x": "1"}}])
    namespaces = nss(a={"x": "1"}, b={"x": "1"})
    externals: dict[cx.Key, dict[str, Any]] = {}
    run_plan(obj, namespaces, externals)
    externals[("b", "unrelated")] = {"metadata": {"name": "unrelated", "namespace": "b"}}
    namespaces["b"] = cx.Namespace({})
    result = run_plan(obj, namespaces, externals)
    assert [(a.op, a.namespace) for a in result.actions] == [("delete", "b")]
    assert set(externals) == {("a", "shared"), ("b", "unrelated")}
    obj["spec"]["externalSecretName"] = "renamed"
    result = run_plan(obj, namespaces, externals)
    assert sorted((a.op, a.name) for a in result.actions) == [
        ("create", "renamed"), ("delete", "shared")]
    assert set(externals) == {("a", "renamed"), ("b", "unrelated")}


def test_no_delete_out_of_scope_or_in_a_namespace_going_away() -> None:
    obj = ces(namespaces=["a"])
    owned_b = cx.desired_external_secret(obj, "b")
    owned_c = cx.desired_external_secret(obj, "c")
    namespaces = {"a": cx.Namespace({}), "b": cx.Namespace({}, terminating=True),
                  "c": cx.Namespace({})}
    externals = {("b", "shared"): owned_b, ("c", "shared"): owned_c}
    assert [a.op for a in cx.plan(obj, namespaces, externals, scope="a").actions] == ["create"]
    assert [(a.op, a.namespace) for a in cx.plan(obj, namespaces, externals).actions] == [
        ("create", "a"), ("delete", "c")]


# --- status ------------------------------------------------------------------------------------

def test_status_is_sorted_and_does_not_churn() -> None:
    obj = ces(namespaces=["b", "a"])
    result = cx.plan(obj, nss(a={}, b={}), {})
    first = cx.build_status(None, result, generation=1, now=NOW)
    assert first["provisionedNamespaces"] == ["a", "b"] and first["failedNamespaces"] is None
    assert first["externalSecretName"] == "shared" and first["observedGeneration"] == 1
    assert first["conditions"][0]["reason"] == "Provisioned"
    stored = {k: v for k, v in first.items() if v is not None}
    again = cx.build_status(stored, result, generation=1, now=LATER)
    assert status_patch(stored, again) is None
    assert again["conditions"][0]["lastTransitionTime"] == NOW
    result.failed["b"] = "refused"
    failed = cx.build_status(stored, result, generation=1, now=LATER)
    patch = status_patch(stored, failed)
    assert patch is not None and patch["provisionedNamespaces"] == ["a"]
    assert patch["failedNamespaces"] == [{"namespace": "b", "reason": "refused"}]
    healed = cx.build_status({**stored, **patch}, cx.plan(obj, nss(a={}, b={}), {}),
                             generation=1, now=LATER)
    assert status_patch({**stored, **patch}, healed)["failedNamespaces"] is None  # type: ignore[index]


def test_concerns_only_its_namespace_when_scoped() -> None:
    obj = ces(namespaces=["other"])
    result = cx.plan(obj, nss(mine={}, other={}), {}, scope="mine")
    assert not cx.concerns(obj, result, "mine") and cx.concerns(obj, result, None)
    assert cx.concerns(obj, result, "mine", [("mine", "shared")])
    obj["status"] = {"provisionedNamespaces": ["mine"]}
    assert cx.concerns(obj, result, "mine")


def test_crd_embeds_the_external_secret_spec_schema() -> None:
    def schema(name: str) -> dict[str, Any]:
        doc = yaml.safe_load((ROOT / "crds" / name).read_text())
        return dict(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"])

    ces_spec = schema("clusterexternalsecret.yaml")["spec"]["properties"]["externalSecretSpec"]
    assert ces_spec == schema("externalsecret.yaml")["spec"], "run make chart-crds"


# --- the engine against a fake API -------------------------------------------------------------

class FakeKube:
    def __init__(self, namespaces: dict[str, dict[str, str]]) -> None:
        self.ns = namespaces
        self.es: dict[cx.Key, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/api/v1/namespaces")
        return {"items": [{"metadata": {"name": n, "labels": lab}} for n, lab in self.ns.items()]}

    def get_namespace(self, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name, "labels": self.ns[name]}} if name in self.ns else None

    def list_custom(self, *args: Any) -> list[dict[str, Any]]:
        return list(self.es.values())

    def create_custom(self, g: str, v: str, plural: str, ns: str, body: dict[str, Any]) -> Any:
        self.writes.append(("create", ns, body["metadata"]["name"]))
        self.es[(ns, body["metadata"]["name"])] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def patch_custom(self, g: str, v: str, p: str, ns: str, name: str, ops: Any) -> Any:
        self.writes.append(("patch", ns, name))
        self.es[(ns, name)] = apply(self.es[(ns, name)], ops)
        return copy.deepcopy(self.es[(ns, name)])

    def delete_custom(self, g: str, v: str, p: str, ns: str, name: str) -> bool:
        self.writes.append(("delete", ns, name))
        return self.es.pop((ns, name), None) is not None

    def patch_custom_status(self, g: str, v: str, p: str, ns: None, name: str,
                            patch: dict[str, Any]) -> Any:
        self.writes.append(("status", "", name))
        self.status = {k: v for k, v in {**self.status, **patch}.items() if v is not None}
        return {"status": copy.deepcopy(self.status)}


def test_engine_follows_namespace_labels() -> None:
    async def scenario() -> FakeKube:
        kube = FakeKube({"a": {"x": "1"}, "b": {}})
        foreign = {"metadata": {"name": "shared", "namespace": "c", "uid": "f"}, "spec": {}}
        kube.es[("c", "shared")] = foreign
        eng = ClusterExternalEngine(kube, scope=None)  # type: ignore[arg-type]
        await eng.seed()
        obj = ces(namespaceSelectors=[{"matchLabels": {"x": "1"}}])
        eng.on_cluster_external("ADDED", obj)
        await eng.reconcile(eng.objects["shared"])
        assert kube.writes == [("create", "a", "shared"), ("status", "", "shared")]
        assert kube.status["provisionedNamespaces"] == ["a"]
        kube.writes.clear()
        await eng.reconcile(eng.objects["shared"])
        assert kube.writes == []  # quiet: nothing written
        eng.on_namespace("MODIFIED", {"metadata": {"name": "b", "labels": {"x": "1"}}})
        eng.on_namespace("ADDED", {"metadata": {"name": "c", "labels": {"x": "1"}}})
        eng.on_namespace("MODIFIED", {"metadata": {"name": "a", "labels": {}}})
        assert eng._queued == {"shared"}
        await eng.reconcile(eng.objects["shared"])
        assert sorted(kube.writes) == [("create", "b", "shared"), ("delete", "a", "shared"),
                                       ("status", "", "shared")]
        assert kube.status["provisionedNamespaces"] == ["b"]
        assert [f["namespace"] for f in kube.status["failedNamespaces"]] == ["c"]
        assert kube.es[("c", "shared")] == foreign
        # the ExternalSecret engine's status write on an owned ExternalSecret: no reconcile
        eng._queued.clear()
        es = copy.deepcopy(kube.es[("b", "shared")])
        es["status"] = {"conditions": []}
        eng.on_external("MODIFIED", es)
        assert eng._queued == set()
        es = copy.deepcopy(es)  # a new event, a new body
        es["metadata"]["labels"] = {"edited": "by-hand"}
        eng.on_external("MODIFIED", es)
        assert eng._queued == {"shared"}
        return kube

    asyncio.run(scenario())


def test_engine_scoped_to_one_namespace() -> None:
    async def scenario() -> None:
        kube = FakeKube({"mine": {}, "other": {"x": "1"}})
        eng = ClusterExternalEngine(kube, scope="mine")  # type: ignore[arg-type]
        await eng.seed()
        assert set(eng.namespaces) == {"mine"}
        eng.on_cluster_external("ADDED", ces(namespaceSelectors=[{"matchLabels": {"x": "1"}}]))
        await eng.reconcile(eng.objects["shared"])
        assert kube.writes == []  # selects only namespaces out of sight: no write, no status
        eng._queued.clear()
        eng.on_namespace("MODIFIED", {"metadata": {"name": "other", "labels": {}}})
        assert eng._queued == set()
        eng.on_namespace("MODIFIED", {"metadata": {"name": "mine", "labels": {"x": "1"}}})
        assert eng._queued == {"shared"}
        await eng.reconcile(eng.objects["shared"])
        assert kube.writes == [("create", "mine", "shared"), ("status", "", "shared")]
        assert kube.status["provisionedNamespaces"] == ["mine"]

    asyncio.run(scenario())
