"""examples/gitops/ end to end: the App-of-Apps tree our users fork, applied to the sandbox.

Argo CD itself does not run here, so the test plays its part: Argo CD's Application and
AppProject CRDs (from its Go module, ``sandbox.builder.ensure_argocd_crds``) are installed and
every Argo CD document of the tree is server-side applied against them with strict field
validation; the project rules Argo CD enforces are checked on the tree (``_gitops.refusals``);
every other object is server-side applied as Argo CD's controller applies it (its field
manager, namespaces first), with only the store's Vault address and mounts substituted. Then
one controller per team namespace (``--namespace`` takes one) runs as its ServiceAccount with
the deploy/ RBAC and the example's TEST sealing key, against OpenBao with Kubernetes auth
roles shaped like the ones the example's README asks for, and the test shows: every
SealedSecret and ExternalSecret of the tree lands; marketing cannot use the payments store; a
``git revert`` of a SealedSecret rolls its Secret back within one watch-driven reconcile; hand
edits of Secrets are undone.

The team namespaces are the tree's own (a strict SealedSecret is bound to its namespace), so
runs take a file lock and clear what an interrupted run left behind.
"""

from __future__ import annotations

import base64
import fcntl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml

from sandbox import builder, paths
from secretsync import api
from secretsync.errors import KubeError, KubeInvalid, KubeNotFound
from secretsync.keys import KeyRegistry
from secretsync.kube import Kube
from secretsync.reconcile.sealed import unseal
from tests.conftest import apply_crds
from tests.integration import _gitops as g
from tests.integration._controller import REPO, Controller
from tests.integration._external import wait_for
from tests.integration.test_sealed_controller import install_controller_namespace, uninstall

pytestmark = pytest.mark.integration

TEAM_NAMESPACES = [f"{t}-{e}" for t in g.TEAMS for e in g.ENVS]
STORES = [f"{t}-vault" for t in g.TEAMS]
QUICK = 10.0  # seconds: a watch event and one reconcile, with room for a busy machine
# long enough that no periodic pass can be what repairs a Secret within QUICK
NO_RESYNC = ("--resync-interval", "1h", "--retry-interval", "1h", "--key-renew-period", "0")


def fail(msg: str) -> None:
    pytest.fail(msg, pytrace=False)


# --- Argo CD's documents -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> list[g.Doc]:
    docs = g.load_tree()
    assert {d.kind for d in g.argo_docs(docs)} == {"Application", "AppProject"}
    return docs


@pytest.fixture(scope="module")
def argo_crds(k8s: Any) -> list[str]:
    """Argo CD v3.6.2's Application and AppProject CRDs, installed (fetched on first use)."""
    try:
        folder = builder.ensure_argocd_crds()
    except builder.BuildError as exc:
        fail(f"Argo CD's CRDs could not be fetched: {exc}")
    return apply_crds(k8s, [folder / "application-crd.yaml", folder / "appproject-crd.yaml"])


def test_argo_cd_documents_pass_argo_cds_schemas(
    kube: Kube, argo_crds: list[str], namespace: str, tree: list[g.Doc]
) -> None:
    """Each Application/AppProject, server-side applied (in a scratch namespace standing in
    for argocd) under Argo CD's own schemas; the same schemas refuse a misspelt field and a
    missing required one, so passing means something."""
    assert set(argo_crds) == {"applications.argoproj.io", "appprojects.argoproj.io"}
    for doc in g.argo_docs(tree):
        assert doc.namespace == "argocd", doc.path
        body = {**doc.body, "metadata": {**doc.body["metadata"], "namespace": namespace}}
        stored = g.apply(kube, body)
        assert stored["spec"] == body["spec"], f"{doc.path}: the API server changed the spec"
    root = next(d.body for d in g.argo_docs(tree) if d.name == "root")
    typo = yaml.safe_load(yaml.safe_dump(root))
    typo["metadata"]["namespace"] = namespace
    typo["spec"]["source"]["directory"] = {"recurce": True}
    # (an unknown field stops server-side apply before validation: HTTP 500, not 422)
    with pytest.raises(KubeError, match="recurce: field not declared in schema"):
        g.apply(kube, typo, dry_run=True)
    del typo["spec"]["source"]["directory"], typo["spec"]["destination"]
    with pytest.raises(KubeInvalid, match="destination"):
        g.apply(kube, typo, dry_run=True)


def test_argo_cd_would_sync_the_tree(tree: list[g.Doc]) -> None:
    """What Argo CD checks before a sync, on the tree: every project exists; every path is in
    the repository; each team Application may deploy each of its objects, and may not
    deploy the other team's (the projects are the fence)."""
    apps = {d.name: d.body for d in g.argo_docs(tree) if d.kind == "Application"}
    projects = {d.name: d.body for d in g.argo_docs(tree) if d.kind == "AppProject"}
    assert set(projects) == set(g.TEAMS)
    assert set(apps) == {"root", "secretsync", "team-projects", "secret-stores",
                         *(f"{t}-{e}" for t in g.TEAMS for e in g.ENVS)}
    for name, app in apps.items():
        src = app["spec"]["source"]
        assert app["spec"]["project"] in {"default", *projects}, name
        base = REPO if name == "secretsync" else g.EXAMPLE
        assert (base / src["path"]).is_dir(), f"{name}: no {src['path']}"
    assert (REPO / apps["secretsync"]["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert apps["root"]["spec"]["source"]["directory"]["recurse"] is True
    for d in g.argo_docs(tree):  # root.yaml syncs apps/: every other Application is there
        want = {"AppProject": "projects", "Application": "apps" if d.name != "root" else "."}
        assert str(d.path.parent) == want[d.kind], d.path
    for team in g.TEAMS:
        other = next(t for t in g.TEAMS if t != team)
        for env in g.ENVS:
            app = apps[f"{team}-{env}"]
            docs = [d for d in tree if d.path.parent == Path(app["spec"]["source"]["path"])]
            assert {d.kind for d in docs} == {"Namespace", "ServiceAccount", api.KIND_SEALED,
                                              api.KIND_EXTERNAL}
            assert g.refusals(projects[team], app, docs) == []
            assert len(g.refusals(projects[other], app, docs)) == len(docs) + 1
        stray = g.Doc(Path("x.yaml"), {"apiVersion": "v1", "kind": "Secret",
                                        "metadata": {"name": "s", "namespace": f"{team}-dev"}})
        store = g.Doc(Path("x.yaml"), {"apiVersion": api.API_VERSION, "kind": api.KIND_STORE,
                                        "metadata": {"name": "s", "namespace": f"{team}-dev"}})
        assert len(g.refusals(projects[team], apps[f"{team}-dev"], [stray, store])) == 2


def test_chart_takes_the_applications_values(tree: list[g.Doc], tmp_path: Path) -> None:
    """apps/secretsync.yaml's valuesObject passes the chart's values.schema.json (helm)."""
    try:
        helm = builder.ensure_helm()
    except builder.BuildError as exc:
        fail(f"helm could not be built: {exc}")
    app = next(d.body for d in g.argo_docs(tree) if d.name == "secretsync")
    source = app["spec"]["source"]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    out = subprocess.run(
        [str(helm), "template", source["helm"]["releaseName"], str(REPO / source["path"]),
         "-n", app["spec"]["destination"]["namespace"], "-f", str(tmp_path / "values.yaml")],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(out.stdout) if d}
    assert "Deployment" in kinds, kinds


def test_committed_sealed_secrets_open_with_the_test_key() -> None:
    registry = KeyRegistry([g.example_key()])
    for team in g.TEAMS:
        for env in g.ENVS:
            sealed = yaml.safe_load(g.sealed_path(team, env).read_text())
            secret = unseal(sealed, registry)
            got = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            assert got == g.sealed_values(team, env), f"{team}/{env}: reseal (see _gitops)"


# --- the tree on the sandbox ----------------------------------------------------------------


@dataclass
class Cluster:
    kube: Kube
    vault: hvac.Client
    values: dict[str, dict[str, str]]  # namespace -> what Vault holds for db-credentials
    controllers: dict[str, Controller] = field(default_factory=dict)

    def secret(self, ns: str, name: str) -> dict[str, str] | None:
        s = self.kube.get_secret(ns, name)
        if s is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}

    def wait_secret(self, ns: str, name: str, want: dict[str, str],
                    timeout: float = 30.0) -> float:
        """Seconds until Secret ns/name holds exactly ``want``."""
        t0 = time.monotonic()
        try:
            wait_for(f"Secret {ns}/{name}", lambda: self.secret(ns, name) == want, timeout, 0.05)
        except pytest.fail.Exception:
            fail(f"Secret {ns}/{name} never held the expected data\n{self.controllers[ns].tail()}")
        return time.monotonic() - t0

    def condition(self, ns: str, plural: str, name: str, ctype: str) -> dict[str, Any] | None:
        obj = self.kube.get_custom(api.GROUP, api.VERSION, plural, ns, name) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions") or []
                     if c.get("type") == ctype), None)

    def wait_condition(self, ns: str, plural: str, name: str, ctype: str,
                       timeout: float = 30.0, **want: Any) -> dict[str, Any]:
        """The ``ctype`` condition once its fields equal ``want``."""
        def check() -> dict[str, Any] | None:
            c = self.condition(ns, plural, name, ctype)
            return c if c and all(c.get(k) == v for k, v in want.items()) else None

        return wait_for(f"{ns}/{name} {ctype} {want}", check, timeout)


def _clear(kube: Kube, timeout: float = 90.0) -> None:
    """Delete the tree's cluster objects (namespaces, stores) and wait until they are gone."""
    for name in STORES:
        kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE, None, name)
    for ns in TEAM_NAMESPACES:
        try:
            kube.request("DELETE", f"/api/v1/namespaces/{ns}")
        except KubeNotFound:
            pass
    wait_for("old team namespaces to go",
             lambda: all(kube.get_namespace(ns) is None for ns in TEAM_NAMESPACES), timeout, 0.5)


@pytest.fixture(scope="module")
def vault_setup(sandbox: Any, kube: Kube) -> Iterator[tuple[hvac.Client, str, str]]:
    """A KV v2 mount and a Kubernetes auth mount for the sandbox's API server, with the
    README's roles: ``<team>`` admits ServiceAccount vault-reader of ``<team>-*`` namespaces
    and reads ``<mount>/<team>/*``. Yields (client, kv mount, auth mount)."""
    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
    tag = uuid.uuid4().hex[:6]
    kv, auth, reviewer_ns = f"kv-gitops-{tag}", f"k8s-gitops-{tag}", f"gitops-reviewer-{tag}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": reviewer_ns}})
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "vault-reviewer", "namespace": reviewer_ns}})
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": reviewer_ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:auth-delegator"},
               "subjects": [{"kind": "ServiceAccount", "name": "vault-reviewer",
                             "namespace": reviewer_ns}]}
    kube.apply(binding)
    jwt = kube.request_token(reviewer_ns, "vault-reviewer")
    vault.sys.enable_secrets_engine("kv", path=kv, options={"version": "2"})
    vault.sys.enable_auth_method("kubernetes", path=auth)
    try:
        vault.auth.kubernetes.configure(
            kubernetes_host=sandbox.server, kubernetes_ca_cert=Path(sandbox.ca_file).read_text(),
            token_reviewer_jwt=jwt, disable_local_ca_jwt=True, mount_point=auth)
        for team in g.TEAMS:
            vault.sys.create_or_update_policy(
                f"{auth}-{team}", f'path "{kv}/data/{team}/*" {{ capabilities = ["read"] }}')
            vault.auth.kubernetes.create_role(
                team, bound_service_account_names=["vault-reader"],
                bound_service_account_namespaces=[f"{team}-*"],
                policies=[f"{auth}-{team}"], ttl="1h", mount_point=auth)
        yield vault, kv, auth
    finally:
        vault.sys.disable_auth_method(auth)
        vault.sys.disable_secrets_engine(kv)
        for team in g.TEAMS:
            vault.sys.delete_policy(f"{auth}-{team}")
        kube.delete_object(binding)
        kube.delete_object({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": reviewer_ns}})


@pytest.fixture(scope="module")
def cluster(
    sandbox: Any, kube: Kube, crds: list[str], tree: list[g.Doc], token_kubeconfig: Any,
    vault_setup: tuple[hvac.Client, str, str], tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """The tree applied, Vault filled, one controller per team namespace, all ready."""
    vault, kv, auth = vault_setup
    paths.DEV.mkdir(parents=True, exist_ok=True)
    lock = open(paths.DEV / "gitops-example.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the namespaces are the tree's: one run at a time
    ctl_ns, cleanup = install_controller_namespace(kube, [g.example_key()])
    world = Cluster(kube, vault, {})
    try:
        _clear(kube)
        run = uuid.uuid4().hex[:8]
        for ns in TEAM_NAMESPACES:
            team, env = ns.split("-")
            world.values[ns] = {"username": f"{team}_{env}", "password": f"pw-{ns}-{run}"}
            vault.secrets.kv.v2.create_or_update_secret(f"{team}/{env}/db", world.values[ns],
                                                        mount_point=kv)
        for doc in g.kube_docs(tree):
            g.apply(kube, g.sandboxed(doc, sandbox.env["VAULT_ADDR"], kv, auth))
        tmp = tmp_path_factory.mktemp("gitops")
        kubeconfig = token_kubeconfig(ctl_ns, "secretsync-controller", tmp / "kubeconfig")
        for ns in TEAM_NAMESPACES:
            ctl = Controller(kubeconfig, ns, tmp / f"{ns}.log", NO_RESYNC,
                             name=f"gitops-{ns}", controller_namespace=ctl_ns)
            world.controllers[ns] = ctl.start()
        yield world
    finally:
        for ctl in world.controllers.values():
            ctl.stop()
        try:
            _clear(kube)
            uninstall(kube, cleanup)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
    logs = "".join(ctl.log() for ctl in world.controllers.values())
    for ns, values in world.values.items():
        assert values["password"] not in logs, f"the {ns} password leaked into a log"
    assert "Traceback" not in logs, "a controller logged a traceback"


def test_every_secret_of_the_tree_lands(cluster: Cluster) -> None:
    """Each environment's SealedSecret unseals to the committed values and its ExternalSecret
    (payments and marketing alike) syncs through its team's store."""
    for ns in TEAM_NAMESPACES:
        team, env = ns.split("-")
        cluster.wait_secret(ns, g.SEALED_NAME, g.sealed_values(team, env))
        cluster.wait_secret(ns, "db-credentials", cluster.values[ns])
        # statuses are written after the Secrets
        cluster.wait_condition(ns, api.PLURAL_EXTERNAL, "db-credentials", "Ready",
                               status="True")
        cluster.wait_condition(ns, api.PLURAL_SEALED, g.SEALED_NAME, "Synced",
                               status="True", reason="Unsealed")


def test_marketing_cannot_use_the_payments_store(cluster: Cluster) -> None:
    """An ExternalSecret a marketing engineer points at payments-vault (the mistake a
    review should catch) is refused with NamespaceNotAllowed; nothing is read or written."""
    ns, ctl = "marketing-dev", cluster.controllers["marketing-dev"]
    cluster.wait_secret(ns, "db-credentials", cluster.values[ns])
    reads = ctl.metric("secretsync_backend_calls_total", backend="vault", operation="get")
    es = yaml.safe_load((g.EXAMPLE / "teams/marketing/dev/db-credentials.yaml").read_text())
    es["metadata"]["name"] = es["spec"]["target"]["name"] = "borrowed"
    es["spec"]["secretStoreRef"]["name"] = "payments-vault"
    es["spec"]["data"][0]["remoteRef"]["key"] = "payments/prod/db"
    es["spec"]["data"][1]["remoteRef"]["key"] = "payments/prod/db"
    g.apply(cluster.kube, es)

    cond = cluster.wait_condition(ns, api.PLURAL_EXTERNAL, "borrowed", "Ready", QUICK,
                                  status="False")
    assert cond["reason"] == "NamespaceNotAllowed", cond
    assert cond["message"] == ("ClusterSecretStore 'payments-vault' may not be used from "
                               "namespace 'marketing-dev' (spec.conditions)"), cond
    assert cluster.secret(ns, "borrowed") is None
    assert ctl.metric("secretsync_backend_calls_total", backend="vault",
                      operation="get") == reads, "the payments Vault was read for marketing"
    assert cluster.values["payments-prod"]["password"] not in ctl.log()


def test_git_revert_of_a_sealed_secret_rolls_back_in_one_reconcile(cluster: Cluster) -> None:
    """A new revision of payments-prod's SealedSecret, then the committed one applied again
    (what Argo CD does after a ``git revert``): the Secret is back to the old value within
    QUICK seconds -- the watch event's reconcile, as the periodic passes are an hour away."""
    ns, name = "payments-prod", g.SEALED_NAME
    old, new = g.sealed_values("payments", "prod", 1), g.sealed_values("payments", "prod", 2)
    cluster.wait_secret(ns, name, old)
    uid = cluster.kube.get_secret(ns, name)["metadata"]["uid"]  # type: ignore[index]
    g.apply(cluster.kube, g.seal("payments", "prod", revision=2))
    cluster.wait_secret(ns, name, new, timeout=QUICK)
    reverted = yaml.safe_load(g.sealed_path("payments", "prod").read_text())
    stored = g.apply(cluster.kube, reverted)
    took = cluster.wait_secret(ns, name, old, timeout=QUICK)
    assert took < QUICK
    secret = cluster.kube.get_secret(ns, name)
    assert secret is not None and secret["metadata"]["uid"] == uid, "patched, not recreated"

    cluster.wait_condition(ns, api.PLURAL_SEALED, name, "Synced", QUICK, status="True",
                           observedGeneration=stored["metadata"]["generation"])


def test_hand_edits_of_secrets_are_undone(cluster: Cluster) -> None:
    """kubectl edit on a SealedSecret's Secret and on an ExternalSecret's Secret: both are
    restored from the watch event, within QUICK seconds."""
    ns = "payments-dev"
    for name, want in ((g.SEALED_NAME, g.sealed_values("payments", "dev")),
                       ("db-credentials", cluster.values[ns])):
        cluster.wait_secret(ns, name, want)
        key = sorted(want)[-1]
        edited = cluster.kube.patch_secret(
            ns, name, {"data": {key: base64.b64encode(b"edited-by-hand").decode()}})
        assert base64.b64decode(edited["data"][key]) == b"edited-by-hand"
        assert cluster.wait_secret(ns, name, want, timeout=QUICK) < QUICK
