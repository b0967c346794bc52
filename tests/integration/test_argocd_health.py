"""The Argo CD health checks of deploy/argocd/, run in Argo CD's own Lua VM on live objects.

The real controller drives each kind into each state against the sandbox; the object is then
read back from the API server as Argo CD's cluster cache would hold it, and the argocd-cm
script for its group and kind (``deploy/argocd/argocd-cm.yaml``, what Argo CD is given) runs
on it in ``argocd-lua-health``: gopher-lua v1.1.2 called the way Argo CD v3.6 calls a health
script (``sandbox/lua_harness/main.go``). No input is hand-written: each is an object the
controller wrote its status on, or one it has not seen yet because it was stopped ("no status
yet", "a generation not observed"). Each check first asserts the captured object's shape
(generation, observedGeneration, condition status and reason), so the state is the one named.

A missing harness is built on first use; one that cannot be built fails the tests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import builder
from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import REPO, Controller, install_rbac
from tests.integration._controller import wait_for as wait_until
from tests.integration._external import MARK, World, make_world, running_controller, wait_for
from tests.integration.test_external_backend_down import PrivateBao
from tests.integration.test_sealed_controller import (
    G,
    P,
    Start,
    V,
    create,
    get_sealed,
    seal,
    wait_condition,
)
from tests.keypairs import keypair

pytestmark = pytest.mark.integration

ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
KEY_PREFIX = "resource.customizations.health."
CONDITION = {api.KIND_SEALED: "Synced"}  # every other kind: Ready
Health = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def harness() -> Path:
    """``argocd-lua-health``, built into the cache on first use; a failed build fails."""
    try:
        return builder.ensure_lua_harness()
    except builder.BuildError as exc:
        pytest.fail(f"argocd-lua-health could not be built: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def health(harness: Path, tmp_path_factory: pytest.TempPathFactory) -> Health:
    """``health(obj)``: the argocd-cm script for obj's group/kind run on obj by the harness."""
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    scripts = tmp_path_factory.mktemp("argocd-cm")

    def run(obj: dict[str, Any]) -> dict[str, Any]:
        group = obj["apiVersion"].rpartition("/")[0]
        key = f"{KEY_PREFIX}{group}_{obj['kind']}"  # how Argo CD names the key
        assert key in data, f"argocd-cm has no {key}"
        script = scripts / f"{group}_{obj['kind']}.lua"
        script.write_text(data[key])
        out = subprocess.run([str(harness), str(script), "-"], input=json.dumps(obj),
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, f"health script failed: {out.stderr}"
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    return run


def shape(obj: dict[str, Any]) -> dict[str, Any]:
    """What the health depends on: generations and the condition's status/reason/message."""
    status = obj.get("status") or {}
    want = CONDITION.get(obj["kind"], "Ready")
    cond: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == want), {})
    return {"generation": obj["metadata"].get("generation"),
            "observedGeneration": status.get("observedGeneration"),
            "condition": (cond.get("status"), cond.get("reason")) if cond else None,
            "message": cond.get("message")}


def expect(health: Health, obj: dict[str, Any], want: str, *, generation: int = 1,
           observed: int | None = 1, condition: tuple[str, str] | None = None,
           reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    """Assert the captured object's shape, then the health Argo CD would give it."""
    got = shape(obj)
    assert got["generation"] == generation, got
    assert got["observedGeneration"] == observed, got
    if reasons:  # one of several reasons is fine (which one depends on timing)
        assert got["condition"] is not None and got["condition"][1] in reasons, got
    else:
        assert got["condition"] == condition, got
    hs = health(obj)
    assert hs["status"] == want, (got, hs)
    if want in ("Healthy", "Degraded"):
        assert hs["message"] == got["message"] and hs["message"], (got, hs)
    elif observed is not None and observed != generation:
        assert hs["message"] == (
            f"Waiting for the secretsync controller to observe generation {generation}")
    else:
        assert hs["message"] == "Waiting for the secretsync controller"
    assert MARK not in hs["message"]
    return hs


# --- the harness is Argo CD's runner ----------------------------------------------------

ARGOCD_MODULE = "github.com/argoproj/argo-cd/v3@v3.6.2"
# Argo CD's own test cases for the checks of the two projects we replace
REFERENCE = re.compile(
    r"resource_customizations/(bitnami\.com/SealedSecret|external-secrets\.io/[A-Za-z]+)/")


class _YamlAsJson(yaml.SafeLoader):
    """YAML read as sigs.k8s.io/yaml reads it for Argo CD's tests: timestamps stay strings."""


_YamlAsJson.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def test_harness_agrees_with_argo_cds_own_health_tests(harness: Path, tmp_path: Path) -> None:
    """The built-in checks for bitnami.com and external-secrets.io objects, on Argo CD's own
    test inputs, give through the harness exactly the health their health_test.yaml expects
    (Argo CD runs built-ins with the standard libraries open: ``-open-libs``). The source is
    Argo CD's module zip from the Go module proxy (downloaded, not built)."""
    # GOTOOLCHAIN=local: the module asks for a newer Go than ours to *build*; the download
    # itself completes (and is checked against go.sum's database) before that is reported
    out = subprocess.run(["go", "mod", "download", "-json", ARGOCD_MODULE], cwd=tmp_path,
                         env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
                         capture_output=True, text=True, timeout=600, check=False)
    info = json.loads(out.stdout or "{}")
    zip_path = Path(info.get("Zip") or "/nonexistent")
    assert info.get("Sum") and zip_path.is_file(), f"{ARGOCD_MODULE}: {out.stdout}{out.stderr}"
    cases = 0
    with zipfile.ZipFile(zip_path) as zf:
        root = f"{ARGOCD_MODULE}/"
        names = set(zf.namelist())
        tests = sorted(n for n in names if n.endswith("/health_test.yaml") and REFERENCE.search(n))
        assert len(tests) >= 6, tests  # SealedSecret and five external-secrets.io kinds
        for test in tests:
            folder = test.rpartition("/")[0]
            script = tmp_path / "health.lua"
            script.write_bytes(zf.read(f"{folder}/health.lua"))
            for case in yaml.safe_load(zf.read(test))["tests"]:
                obj = yaml.load(zf.read(f"{folder}/{case['inputPath']}"), Loader=_YamlAsJson)
                run = subprocess.run([str(harness), "-open-libs", str(script), "-"],
                                     input=json.dumps(obj), capture_output=True, text=True,
                                     timeout=30, check=False)
                where = f"{folder.removeprefix(root)}/{case['inputPath']}"
                assert run.returncode == 0, f"{where}: {run.stderr}"
                want = case["healthStatus"]
                got = json.loads(run.stdout) or {}
                assert (got.get("status"), got.get("message") or "") == (
                    want.get("status"), want.get("message") or ""), where
                cases += 1
    assert cases >= 20, cases


# --- the install step --------------------------------------------------------------------


def test_readme_patch_command_installs_the_keys(kube: Kube, sandbox: Any, namespace: str,
                                                 tmp_path: Path) -> None:
    """README's ``kubectl -n argocd patch configmap argocd-cm --type merge --patch-file``
    (into the test namespace): adds the four keys, byte for byte, and keeps Argo CD's own."""
    try:
        kubectl = builder.ensure_kubectl()
    except builder.BuildError as exc:
        pytest.fail(f"kubectl could not be built: {exc}", pytrace=False)
    kube.create_configmap(namespace, {"metadata": {"name": "argocd-cm"},
                                      "data": {"url": "https://argocd.example"}})
    patch = yaml.safe_load(ARGOCD_CM.read_text())
    patch["metadata"]["namespace"] = namespace
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(patch))
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", str(sandbox.kubeconfig), "-n", namespace, "patch",
         "configmap", "argocd-cm", "--type", "merge", "--patch-file", str(tmp_path / "patch.yaml")],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lua = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    assert (kube.get_configmap(namespace, "argocd-cm") or {}).get("data") == {
        "url": "https://argocd.example", **lua}


# --- SealedSecret ------------------------------------------------------------------------


def test_sealed_secret_states(kube: Kube, namespace: str, start_controller: Start,
                              health: Health) -> None:
    def live(name: str) -> dict[str, Any]:
        obj = get_sealed(kube, namespace, name)
        assert obj is not None
        return obj

    # no status yet: created while no controller runs
    create(kube, seal("fresh", namespace))
    expect(health, live("fresh"), "Progressing", observed=None)

    ctl = start_controller()
    create(kube, seal("synced", namespace))
    create(kube, seal("wrong-key", namespace, key=keypair(3).key))
    wrong_scope = seal("wrong-scope", namespace, scope=api.SCOPE_NAMESPACE)
    for a in (api.ANN_SCOPE, api.BITNAMI_ANN_NAMESPACE_WIDE):
        wrong_scope["metadata"]["annotations"].pop(a, None)
    create(kube, wrong_scope)
    bad_template = seal("bad-template", namespace)
    bad_template["spec"]["template"]["data"] = {"x": "{{ no_such_item }}"}
    create(kube, bad_template)
    states = {
        "fresh": ("True", "Unsealed", "Healthy"),
        "synced": ("True", "Unsealed", "Healthy"),
        "wrong-key": ("False", "DecryptFailed", "Degraded"),
        "wrong-scope": ("False", "ScopeMismatch", "Degraded"),
        "bad-template": ("False", "InvalidTemplate", "Degraded"),
    }
    for name, (status, reason, want) in states.items():
        wait_condition(kube, namespace, name, status, reason)
        expect(health, live(name), want, condition=(status, reason))
    assert "does not hold" in health(live("wrong-key"))["message"]

    # a new generation the controller has not observed (it is stopped): Progressing, even
    # though the condition of generation 1 still says Unsealed -- or DecryptFailed: a spec
    # nobody has looked at yet is neither Healthy nor Degraded
    ctl.stop()
    newer = seal("synced", namespace)["spec"]["encryptedData"]["password"]
    kube.patch_custom(G, V, P, namespace, "synced", {"spec": {"encryptedData": {"extra": newer}}})
    kube.patch_custom(G, V, P, namespace, "wrong-key",
                      {"spec": {"template": {"metadata": {"labels": {"fixed": "maybe"}}}}})
    expect(health, live("synced"), "Progressing", generation=2, observed=1,
           condition=("True", "Unsealed"))
    expect(health, live("wrong-key"), "Progressing", generation=2, observed=1,
           condition=("False", "DecryptFailed"))
    # ... and Healthy (Degraded) again once it has
    start_controller()
    for name, want, cond in (("synced", "Healthy", ("True", "Unsealed")),
                             ("wrong-key", "Degraded", ("False", "DecryptFailed"))):
        def observed(n: str = name) -> dict[str, Any] | None:
            obj = live(n)
            return obj if (obj.get("status") or {}).get("observedGeneration") == 2 else None

        obj = wait_until(observed, what=f"{name}: generation 2 observed")
        expect(health, obj, want, generation=2, observed=2, condition=cond)


# --- ExternalSecret, SecretStore, ClusterSecretStore ---------------------------------------


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[PrivateBao]:
    """A private OpenBao, so "backend down" never stops the shared one."""
    b = PrivateBao(tmp_path / "bao.log")
    yield b
    b.stop()


@pytest.fixture
def world(sandbox: Any, k8s: Any, crds: list[str], namespace: str, tmp_path: Path,
          token_kubeconfig: Any, bao: PrivateBao) -> Iterator[World]:
    install_rbac(k8s)
    vault = bao.start()
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = make_world(admin, vault, namespace=namespace, mount="secret", vault_addr=bao.addr,
                   tmp=tmp_path, token=bao.token)
    with running_controller(w, token_kubeconfig):
        yield w


@pytest.fixture
def cluster_stores(world: World) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    names = {"valid": f"argocd-ok-{tag}", "invalid": f"argocd-bad-{tag}"}
    yield names
    for name in names.values():
        world.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE, None, name)


def _store(w: World, name: str, *, cluster: bool = False) -> dict[str, Any]:
    plural = api.PLURAL_CLUSTER_STORE if cluster else api.PLURAL_STORE
    obj = w.kube.get_custom(api.GROUP, api.VERSION, plural, None if cluster else w.namespace,
                            name)
    assert obj is not None, name
    return obj


def _wait_store(w: World, name: str, status: str, *, cluster: bool = False) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _store(w, name, cluster=cluster)
        cond = shape(obj)["condition"]
        return obj if cond is not None and cond[0] == status else None

    found: dict[str, Any] = wait_for(f"store {name} Ready={status}", check, 30)
    return found


def _vault(w: World, token_secret: str, namespace: str | None = None) -> dict[str, Any]:
    ref = {"name": token_secret, "key": "token", **({"namespace": namespace} if namespace else {})}
    return {"vault": {"server": w.vault_addr, "path": w.mount, "auth": {"tokenSecretRef": ref}}}


def test_external_secret_and_store_states(world: World, bao: PrivateBao, health: Health,
                                          cluster_stores: dict[str, str]) -> None:
    w = world
    assert w.controller is not None
    w.kube.create_secret(w.namespace, {"metadata": {"name": "bad-token"}, "data": {
        "token": base64.b64encode(b"not-a-token").decode()}})
    w.put("app", {"v": f"value-{MARK}"})
    ref = [{"secretKey": "v", "remoteRef": {"key": "app", "property": "v"}}]

    # stores: valid and invalid (credentials refused), namespaced and cluster-wide
    w.apply_store("vault")
    w.apply_store("badvault", provider=_vault(w, "bad-token"))
    w.apply_store(cluster_stores["valid"], cluster=True)
    w.apply_store(cluster_stores["invalid"], cluster=True,
                  provider=_vault(w, "bad-token", w.namespace))
    for name, cluster, status, want in (
        ("vault", False, "True", "Healthy"),
        ("badvault", False, "False", "Degraded"),
        (cluster_stores["valid"], True, "True", "Healthy"),
        (cluster_stores["invalid"], True, "False", "Degraded"),
    ):
        obj = _wait_store(w, name, status, cluster=cluster)
        reason = "Valid" if status == "True" else "BackendAuthFailed"
        expect(health, obj, want, condition=(status, reason))

    # ExternalSecrets: synced, template error, store not ready, (below) backend down
    w.apply_es("synced", {"data": ref})
    w.apply_es("bad-template", {"data": ref,
                                "target": {"template": {"data": {"a": "{{ missing_name }}"}}}})
    w.apply_es("store-not-ready", {"secretStoreRef": {"name": "badvault"}, "data": ref})
    w.apply_es("down", {"refreshInterval": "1s", "data": ref})
    for name, status, reason, want in (
        ("synced", "True", "Synced", "Healthy"),
        ("bad-template", "False", "InvalidTemplate", "Degraded"),
        ("store-not-ready", "False", "StoreNotReady", "Degraded"),
        ("down", "True", "Synced", "Healthy"),
    ):
        obj = w.wait_ready(name, status, reason)
        expect(health, obj, want, condition=(status, reason))

    # the controller away: a new object has no status, a changed one a generation not observed
    w.controller.stop()
    w.apply_es("fresh", {"data": ref})
    expect(health, w.es("fresh"), "Progressing", observed=None)
    w.apply_es("synced", {"refreshInterval": "2h", "data": ref})
    expect(health, w.es("synced"), "Progressing", generation=2, observed=1,
           condition=("True", "Synced"))
    w.apply_es("bad-template", {"data": ref,
                                "target": {"template": {"data": {"a": "{{ v }}"}}}})
    expect(health, w.es("bad-template"), "Progressing", generation=2, observed=1,
           condition=("False", "InvalidTemplate"))
    w.apply_store("badvault", provider=_vault(w, "vault-token"))
    expect(health, _store(w, "badvault"), "Progressing", generation=2, observed=1,
           condition=("False", "BackendAuthFailed"))
    w.apply_store(cluster_stores["valid"], cluster=True,
                  conditions=[{"namespaces": [w.namespace]}])
    expect(health, _store(w, cluster_stores["valid"], cluster=True), "Progressing",
           generation=2, observed=1, condition=("True", "Valid"))

    # back: each reports on its new generation
    w.controller = Controller(w.controller.kubeconfig, w.namespace, w.tmp / "controller-2.log",
                              name=w.controller.name).start()
    for name, gen in (("fresh", 1), ("synced", 2), ("bad-template", 2)):
        def observed(n: str = name, g: int = gen) -> dict[str, Any] | None:
            obj = w.es(n)
            return obj if (obj.get("status") or {}).get("observedGeneration") == g else None

        obj = wait_for(f"{name}: generation {gen} observed", observed, 30)
        expect(health, obj, "Healthy", generation=gen, observed=gen,
               condition=("True", "Synced"))
    obj = _wait_store(w, "badvault", "True")
    expect(health, obj, "Healthy", generation=2, observed=2, condition=("True", "Valid"))

    # backend down: the ExternalSecret that refreshes every second, and its store
    bao.stop()
    es = w.wait_ready("down", "False")
    expect(health, es, "Degraded", reasons=("BackendUnavailable", "StoreNotReady"))
    store = _wait_store(w, "vault", "False")
    expect(health, store, "Degraded", reasons=("BackendUnavailable",))
