"""The Helm chart ``deploy/chart/secretsync`` with the real ``helm`` v4 CLI.

- ``helm lint --strict`` passes, with the default values and with every option on.
- ``helm template`` with the default values renders exactly the objects of the kustomize base
  (``kubectl kustomize deploy/``) except its Namespace, so the two cannot drift; the chart's
  ``crds/`` are the repository's ``crds/`` byte for byte.
- Every flag of ``secretsync controller`` and every ``SECRETSYNC_*`` knob is a value: the
  rendered args and environment, read by the controller's own parser and settings, give the
  values that were set.
- ``values.schema.json`` rejects a bad value with a message naming it.
- The sealing keys survive everything Helm does: the chart never renders a Secret (nor the
  Namespace, whose deletion would take the keys with it), and against the sandbox's API
  server a key Secret written by the controller (running as the chart's ServiceAccount, with
  the chart's RBAC) keeps its exact bytes through ``helm upgrade`` with changed values and
  ``helm uninstall``; after a new ``helm install`` the controller uses it again.

A helm or kubectl that cannot be built FAILS these tests (never skips).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import builder
from sandbox.demo import ControllerProcess
from secretsync.controller.main import add_arguments
from secretsync.controller.settings import from_args
from secretsync.keys import secret_body_for_key
from tests.integration._helm import (
    CHART,
    REPO,
    Helm,
    Obj,
    built,
    by_key,
    container,
    kubectl_json,
    kustomize,
)
from tests.keypairs import keypair

pytestmark = pytest.mark.integration

# flags that make no sense in a pod (it is configured in-cluster)
NOT_VALUES = {"--kubeconfig", "--context", "--help"}

ALL_ON: Obj = {
    "name": "ss-all",
    "commonLabels": {"team": "platform"},
    "image": {"repository": "registry.example/secretsync", "digest": "sha256:" + "ab" * 32},
    "imagePullSecrets": [{"name": "pull"}],
    "replicas": 3,
    "revisionHistoryLimit": 4,
    "controller": {
        "watchNamespace": "apps", "leaderElect": False, "logFormat": "text",
        "logLevel": "DEBUG", "httpPort": 9090, "httpHost": "0.0.0.0",
        "keyRenewPeriod": "1h30m", "keyCutoffTime": "2025-01-02T03:04:05Z",
        "keyPrefix": "k-", "keyBits": 3072, "keyPollInterval": 2.5, "retryInterval": "45s",
        "resyncInterval": 300, "leaseDuration": 20, "workers": 3, "bitnamiCompat": True,
        "importBitnamiKeys": True, "extraArgs": [],
    },
    "knobs": {"ioThreads": 8, "externalWorkers": 4, "fetchWindow": -1,
              "templateMaxBytes": 2097152, "templateTimeout": 0.5},
    "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 30},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}}}],
    "podAnnotations": {"a": "b"}, "podLabels": {"c": "d"},
    "extraVolumes": [{"name": "azure-token", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "azure-token", "mountPath": "/var/run/azure"}],
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    "networkPolicy": {"enabled": True, "ingressFrom": [
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
}


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return built(builder.ensure_kubectl, "kubectl")


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(built(builder.ensure_helm, "helm"), tmp_path_factory.mktemp("helm"))


def test_helm_is_the_pinned_v4_build(helm: Helm) -> None:
    out = helm.run("version", "--template", "{{ .Version }}").stdout.strip()
    assert out == builder.HELM_VERSION


@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-on"])
def test_lint_strict(helm: Helm, values: Obj | None) -> None:
    args: list[str | Path] = ["lint", "--strict", CHART]
    if values is not None:
        args += ["-f", helm.values_file(values, "lint.yaml")]
    out = helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_default_render_is_the_kustomize_base(helm: Helm, kubectl: Path) -> None:
    """The same objects, field for field; only the Namespace is left to the user (a chart
    that owned it would delete it, and the key Secrets in it, on ``helm uninstall``)."""
    chart = by_key(helm.template())
    base = by_key(kustomize(kubectl))
    assert base.pop(("Namespace", "", "secretsync"))["kind"] == "Namespace"
    assert sorted(chart) == sorted(base)
    for key, obj in base.items():
        assert chart[key] == obj, f"{key} differs between the chart and deploy/"


def test_chart_crds_are_the_repository_crds() -> None:
    """Helm installs ``crds/`` and never deletes or upgrades them; `make chart-crds` copies."""
    ours = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(chart) == sorted(ours), "run `make chart-crds`"
    for name, data in ours.items():
        assert chart[name] == data, f"crds/{name} differs from the chart's: run `make chart-crds`"


@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-on"])
def test_no_secret_or_namespace_is_ever_rendered(helm: Helm, values: Obj | None) -> None:
    docs = helm.template(values, extra=("--include-crds",))
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Secret", "Namespace"}
    assert "CustomResourceDefinition" in kinds


def _controller_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return {opt for action in parser._actions for opt in action.option_strings
            if opt.startswith("--")}


def _knobs() -> set[str]:
    text = "".join(p.read_text() for p in (REPO / "secretsync").rglob("*.py"))
    names = set(re.findall(r'"(SECRETSYNC_[A-Z_]+)"', text))
    # read by the CLI, or the default of a flag the chart always passes
    return names - {"SECRETSYNC_DEBUG", "SECRETSYNC_NAMESPACE"}


def test_every_flag_and_knob_is_a_value(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendered with every value set, the controller's own parser and settings read back
    exactly the values given (so a number is never rendered as 2.097152e+06, say)."""
    default_args = container(helm.template())["args"]
    ctr = container(helm.template(ALL_ON, namespace="rel-ns"))
    args = ctr["args"]
    rendered = {a.split("=", 1)[0] for a in [*default_args, *args] if a.startswith("--")}
    assert _controller_flags() - NOT_VALUES <= rendered
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    assert _knobs() <= set(env)

    assert args[0] == "controller"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for name, value in env.items():
        if name.startswith("SECRETSYNC_"):
            monkeypatch.setenv(name, value)
    pod_args = [a.replace("$(POD_NAMESPACE)", "rel-ns") for a in args[1:]]
    s = from_args(parser.parse_args(pod_args))
    assert (s.namespace, s.leader_elect, s.log_format, s.log_level) == (
        "apps", False, "text", "DEBUG")
    assert (s.http_port, s.http_host, s.lease_duration) == (9090, "0.0.0.0", 20)
    assert (s.keys.namespace, s.keys.name, s.keys.prefix, s.keys.bits) == (
        "rel-ns", "ss-all-controller", "k-", 3072)
    assert (s.keys.renew_period, s.keys.poll_interval) == (5400.0, 2.5)
    assert s.keys.cutoff == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert s.keys.import_bitnami and s.sealed.bitnami_compat
    assert (s.sealed.workers, s.sealed.retry_interval, s.sealed.resync_interval) == (3, 45, 300)
    assert (s.io_threads, s.external.workers, s.external.fetch_window) == (8, 4, -1)
    assert (s.templates.max_bytes, s.templates.timeout) == (2097152, 0.5)


def test_all_on_render(helm: Helm) -> None:
    docs = by_key(helm.template(ALL_ON, namespace="rel-ns"))
    dep = docs[("Deployment", "rel-ns", "ss-all-controller")]
    pod = dep["spec"]["template"]["spec"]
    for field in ("priorityClassName", "nodeSelector", "tolerations", "affinity",
                  "topologySpreadConstraints", "imagePullSecrets"):
        assert pod[field] == (ALL_ON.get(field) or pod[field]), field
    ctr = container(list(docs.values()))
    assert ctr["image"] == "registry.example/secretsync@sha256:" + "ab" * 32
    assert ctr["ports"] == [{"name": "http", "containerPort": 9090}]
    assert ctr["startupProbe"]["failureThreshold"] == 30
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in ctr["env"]
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["labels"]["team"] == "platform"
    assert docs[("PodDisruptionBudget", "rel-ns", "ss-all-controller")]["spec"][
        "maxUnavailable"] == "50%"
    mon = docs[("ServiceMonitor", "rel-ns", "ss-all-controller")]
    assert mon["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}
    assert mon["spec"]["selector"] == dep["spec"]["selector"]
    pol = docs[("NetworkPolicy", "rel-ns", "ss-all-controller")]
    assert pol["spec"]["ingress"][0]["from"] == ALL_ON["networkPolicy"]["ingressFrom"]
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    reader = docs[("Role", "rel-ns", "ss-all-cert-reader")]
    assert reader["rules"][0]["resourceNames"] == ["ss-all-controller-cert"]
    crb = docs[("ClusterRoleBinding", "", "ss-all-external")]
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "ss-all-controller",
                                "namespace": "rel-ns"}]


@pytest.mark.parametrize(("setting", "needle"), [
    ("replicas=two", "/replicas"),
    ("replica=3", "replica"),
    ("controller.logFormat=xml", "/controller/logFormat"),
    ("controller.keyRenewPeriod=soon", "/controller/keyRenewPeriod"),
    ("knobs.templateMaxBytes=10", "/knobs/templateMaxBytes"),
    ("name=Secret_Sync", "/name"),
])
def test_schema_rejects_bad_values(helm: Helm, setting: str, needle: str) -> None:
    for command in ("template", "lint"):
        args = [command, CHART, "--set", setting] if command == "lint" else [
            command, "rel", CHART, "--set", setting]
        done = helm.run(*args, check=False)
        assert done.returncode != 0, (command, setting)
        out = done.stderr + done.stdout
        assert "values don't meet the specifications of the schema" in out, out
        assert needle in out, out


def test_schema_message_names_value_and_type(helm: Helm) -> None:
    done = helm.run("template", "rel", CHART, "--set", "replicas=two", check=False)
    assert re.search(r"at '/replicas': got string, want integer", done.stderr), done.stderr


# --- against the sandbox's API server ---------------------------------------------------------


@pytest.fixture
def release(sandbox: Any, crds: list[str], kubectl: Path) -> Iterator[tuple[str, str]]:
    """(namespace, name): a fresh namespace under the restricted Pod Security Standard (as the
    README tells users to create it) and a unique object-name prefix; the cluster-scoped
    objects of a failed run are removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    ns, name = f"helm-{tag}", f"ss{tag}"
    kc = str(sandbox.kubeconfig)

    def kubectl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(kubectl), "--kubeconfig", kc, *args], capture_output=True,
                              text=True, timeout=60)

    made = kubectl_run("create", "namespace", ns)
    assert made.returncode == 0, made.stderr
    kubectl_run("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    yield ns, name
    for kind in ("clusterrolebinding", "clusterrole"):
        kubectl_run("delete", kind, f"{name}-controller", f"{name}-external",
                    "--ignore-not-found")
    kubectl_run("delete", "namespace", ns, "--wait=false")


def _secrets(kubectl: Path, kc: Path, ns: str) -> dict[str, tuple[str, str, str, Obj]]:
    """Every Secret of the namespace but Helm's own release records: name -> (uid,
    resourceVersion, type, data); equal means not rewritten, not recreated."""
    items = kubectl_json(kubectl, kc, "get", "secrets", "-n", ns)["items"]
    return {s["metadata"]["name"]: (s["metadata"]["uid"], s["metadata"]["resourceVersion"],
                                    s["type"], s.get("data") or {})
            for s in items if s["type"] != "helm.sh/release.v1"}


def _chart_objects(kubectl: Path, kc: Path, ns: str, name: str) -> set[str]:
    kinds = "deployment,serviceaccount,service,poddisruptionbudget,role,rolebinding,networkpolicy"
    found = kubectl_json(kubectl, kc, "get", kinds, "-n", ns)["items"]
    found += kubectl_json(kubectl, kc, "get", "clusterrole,clusterrolebinding")["items"]
    return {f"{o['kind']}/{o['metadata']['name']}" for o in found
            if o["metadata"]["name"].startswith(name + "-")}


def _run_controller(sandbox: Any, token_kubeconfig: Any, ns: str, name: str,
                    tmp: Path) -> ControllerProcess:
    """The controller as the chart's ServiceAccount, with the chart's RBAC only."""
    kc = token_kubeconfig(ns, f"{name}-controller", tmp / f"sa-{uuid.uuid4().hex[:4]}")
    ctl = ControllerProcess(kc, controller_namespace=ns, namespace=ns,
                            extra=("--controller-name", f"{name}-controller"),
                            log_path=tmp / f"controller-{uuid.uuid4().hex[:4]}.log").start()
    try:
        ctl.wait_ready(120)
    except RuntimeError:
        ctl.stop()
        raise
    return ctl


def test_install_upgrade_uninstall_keep_the_key_secrets(
    helm: Helm, kubectl: Path, sandbox: Any, token_kubeconfig: Any,
    release: tuple[str, str], tmp_path: Path,
) -> None:
    ns, name = release
    kc = Path(sandbox.kubeconfig)
    h = Helm(helm.binary, tmp_path / "helm", kubeconfig=kc)
    h.run("install", "secretsync", CHART, "-n", ns, "--set", f"name={name}")
    expected = {f"{k}/{name}-controller" for k in (
        "Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "Role",
        "RoleBinding", "ClusterRole", "ClusterRoleBinding")}
    expected |= {f"Role/{name}-cert-reader", f"RoleBinding/{name}-cert-reader",
                 f"ClusterRole/{name}-external", f"ClusterRoleBinding/{name}-external"}
    assert _chart_objects(kubectl, kc, ns, name) == expected

    # the controller generates its key and writes it to a Secret, as in a real cluster
    ctl = _run_controller(sandbox, token_kubeconfig, ns, name, tmp_path)
    ctl.stop()
    keys = _secrets(kubectl, kc, ns)
    labelled = kubectl_json(kubectl, kc, "get", "secrets", "-n", ns, "-l",
                            "secretsync.io/sealing-key=active")["items"]
    assert len(labelled) == 1 and labelled[0]["type"] == "kubernetes.io/tls"
    cert = kubectl_json(kubectl, kc, "get", "configmap", f"{name}-controller-cert", "-n", ns)

    # a chart change: other values, an object dropped (PDB), one added (NetworkPolicy)
    changed = {"name": name, "replicas": 1, "controller": {"logLevel": "DEBUG",
               "keyRenewPeriod": "48h"}, "knobs": {"externalWorkers": 4},
               "resources": {"limits": {"memory": "1Gi"}},
               "podDisruptionBudget": {"enabled": False}, "networkPolicy": {"enabled": True}}
    h.run("upgrade", "secretsync", CHART, "-n", ns, "-f", h.values_file(changed))
    dep = kubectl_json(kubectl, kc, "get", "deployment", f"{name}-controller", "-n", ns)
    assert dep["spec"]["replicas"] == 1
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    assert {"--log-level=DEBUG", "--key-renew-period=48h"} <= set(ctr["args"])
    assert ctr["resources"]["limits"] == {"memory": "1Gi"}
    objects = _chart_objects(kubectl, kc, ns, name)
    assert f"PodDisruptionBudget/{name}-controller" not in objects
    assert f"NetworkPolicy/{name}-controller" in objects
    assert _secrets(kubectl, kc, ns) == keys, "helm upgrade touched a Secret"

    h.run("uninstall", "secretsync", "-n", ns)
    assert _chart_objects(kubectl, kc, ns, name) == set()
    assert _secrets(kubectl, kc, ns) == keys, "helm uninstall touched a Secret"
    for crd in ("sealedsecrets.secretsync.io", "externalsecrets.secretsync.io"):
        kubectl_json(kubectl, kc, "get", "crd", crd)  # still there

    # installed again, the controller finds its key: nothing new, the same certificate
    h.run("install", "secretsync", CHART, "-n", ns, "--set", f"name={name}")
    ctl = _run_controller(sandbox, token_kubeconfig, ns, name, tmp_path)
    try:
        assert ctl.http("/v1/cert.pem")[1].decode() == cert["data"]["cert.pem"]
    finally:
        ctl.stop()
    assert _secrets(kubectl, kc, ns) == keys
    h.run("uninstall", "secretsync", "-n", ns)


def test_install_takes_over_a_kubectl_install(
    helm: Helm, kubectl: Path, sandbox: Any, release: tuple[str, str], tmp_path: Path,
) -> None:
    """Switching from ``kubectl apply -k deploy/`` (the same objects, as compared above) to
    Helm in place: ``--take-ownership --force-conflicts`` adopts them; the keys stay."""
    ns, name = release
    kc = Path(sandbox.kubeconfig)
    h = Helm(helm.binary, tmp_path / "helm", kubeconfig=kc)
    rendered = h.run("template", "secretsync", CHART, "-n", ns, "--set", f"name={name}").stdout
    key = json.dumps(secret_body_for_key(keypair(0).key, namespace=ns))
    for doc in (rendered, key):
        applied = subprocess.run([str(kubectl), "--kubeconfig", str(kc), "apply", "-f", "-"],
                                 input=doc, capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
    keys = _secrets(kubectl, kc, ns)
    assert len(keys) == 1
    refused = h.run("install", "secretsync", CHART, "-n", ns, "--set", f"name={name}",
                    check=False)
    assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr
    h.run("install", "secretsync", CHART, "-n", ns, "--set", f"name={name}",
          "--take-ownership", "--force-conflicts")
    dep = kubectl_json(kubectl, kc, "get", "deployment", f"{name}-controller", "-n", ns)
    assert dep["metadata"]["annotations"]["meta.helm.sh/release-name"] == "secretsync"
    assert _secrets(kubectl, kc, ns) == keys
    h.run("uninstall", "secretsync", "-n", ns)
    assert _chart_objects(kubectl, kc, ns, name) == set()
    assert _secrets(kubectl, kc, ns) == keys
