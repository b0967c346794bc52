"""The examples/gitops/ tree as data, for its end-to-end test (and for re-sealing it).

Why this exists: the test needs the tree three ways -- Argo CD's documents (validated by the
API server against Argo CD's own CRDs), our objects (applied to the sandbox the way Argo CD
would, with the store's Vault address substituted) and the answers Argo CD would give about
them (may this project deploy this object?). Keeping the loading, the substitution and that
small re-implementation of Argo CD's project rules here leaves the test module to the
behaviour. The SealedSecrets in the tree are sealed to a fixed, public TEST key
(tests/integration/data/gitops-example-key.pem); ``python -m tests.integration._gitops
reseal`` writes them again, e.g. after changing ``sealed_values``.
"""

from __future__ import annotations

import copy
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from secretsync import api
from secretsync.keys import SealingKey, load_private_keys
from secretsync.kube import Kube, paths
from secretsync.sealing import seal_secret

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "gitops"
KEY_FILE = Path(__file__).resolve().parent / "data" / "gitops-example-key.pem"
TEAMS = ("payments", "marketing")
ENVS = ("dev", "prod")
IN_CLUSTER = "https://kubernetes.default.svc"
PLACEHOLDER_VAULT = "https://vault.example.com:8200"
PLACEHOLDER_KV_MOUNT = "secret"
PLACEHOLDER_AUTH_MOUNT = "kubernetes"
SEALED_NAME = "api-key"  # the SealedSecret (and Secret) of every team environment
# what Argo CD's application controller calls itself when it applies server-side
FIELD_MANAGER = "argocd-controller"
ARGO_GROUP = "argoproj.io"
PLURALS = {
    "Application": "applications",
    "AppProject": "appprojects",
    api.KIND_SEALED: api.PLURAL_SEALED,
    api.KIND_EXTERNAL: api.PLURAL_EXTERNAL,
    api.KIND_STORE: api.PLURAL_STORE,
    api.KIND_CLUSTER_STORE: api.PLURAL_CLUSTER_STORE,
}
# Argo CD applies a sync in this kind order (namespaces first, custom resources last)
KIND_ORDER = {"Namespace": 0, "ServiceAccount": 1, api.KIND_CLUSTER_STORE: 2}

Obj = dict[str, Any]


@dataclass(frozen=True)
class Doc:
    path: Path  # relative to EXAMPLE
    body: Obj

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def group(self) -> str:
        return str(self.body["apiVersion"]).rpartition("/")[0]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "")


def load_tree() -> list[Doc]:
    """Every document of every *.yaml file under examples/gitops/ (README excluded)."""
    docs = []
    for path in sorted(EXAMPLE.rglob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if body:
                docs.append(Doc(path.relative_to(EXAMPLE), body))
    return docs


def argo_docs(tree: list[Doc]) -> list[Doc]:
    return [d for d in tree if d.group == ARGO_GROUP]


def kube_docs(tree: list[Doc]) -> list[Doc]:
    """Our objects in the order Argo CD would apply them."""
    return sorted((d for d in tree if d.group != ARGO_GROUP),
                  key=lambda d: (KIND_ORDER.get(d.kind, 9), str(d.path)))


def sandboxed(doc: Doc, vault_addr: str, kv_mount: str, auth_mount: str) -> Obj:
    """``doc`` as applied to the sandbox: a store's placeholder Vault (address, KV mount,
    Kubernetes auth mount) replaced by the sandbox's; anything else unchanged."""
    body = copy.deepcopy(doc.body)
    if doc.kind == api.KIND_CLUSTER_STORE:
        vault = body["spec"]["provider"]["vault"]
        assert (vault["server"], vault["path"], vault["auth"]["kubernetes"]["mountPath"]) == (
            PLACEHOLDER_VAULT, PLACEHOLDER_KV_MOUNT, PLACEHOLDER_AUTH_MOUNT), doc.path
        vault.update(server=vault_addr, path=kv_mount)
        vault["auth"]["kubernetes"]["mountPath"] = auth_mount
    return body


def apply(kube: Kube, body: Obj, *, dry_run: bool = False) -> Obj:
    """Server-side apply as Argo CD does it (its field manager, conflicts forced), with
    ``fieldValidation=Strict``: a field the schema does not know is an error, not dropped."""
    kind = str(body["kind"])
    path = paths.object_path(body, PLURALS.get(kind))
    query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
    if dry_run:
        query["dryRun"] = "All"
    meta = body.get("metadata") or {}
    return kube.request("PATCH", path, body, query=query, content_type=paths.APPLY,
                        what=f"apply {kind} {meta.get('namespace') or ''}/{meta.get('name')}")


# --- Argo CD's project rules (v3.6.2, pkg/apis/application/v1alpha1) -----------------------


def _match(pattern: str, value: str) -> bool:
    """filepath.Match for names without '/' (Kubernetes names have none); '*' alone always
    matches and a leading '!' negates, as Argo CD's globMatch does for destinations."""
    if pattern.startswith("!"):
        return not _match(pattern[1:], value)
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


def kind_permitted(project: Obj, group: str, kind: str, name: str, namespaced: bool) -> bool:
    """AppProject.IsGroupKindNamePermitted: a namespaced kind needs a match in
    namespaceResourceWhitelist (absent = all), a cluster-scoped one an entry of
    clusterResourceWhitelist (kind, group and, when given, name)."""
    spec = project.get("spec") or {}

    def listed(items: list[Obj], with_name: bool) -> bool:
        return any(_match(i["kind"], kind) and _match(i["group"], group)
                   and (not with_name or not i.get("name") or _match(i["name"], name))
                   for i in items)

    if namespaced:
        white = spec.get("namespaceResourceWhitelist")
        black = spec.get("namespaceResourceBlacklist") or []
        return (white is None or listed(white, False)) and not listed(black, False)
    return (listed(spec.get("clusterResourceWhitelist") or [], True)
            and not listed(spec.get("clusterResourceBlacklist") or [], True))


def destination_permitted(project: Obj, server: str, namespace: str) -> bool:
    """AppProject.isDestinationMatched for a destination given by server URL."""
    return any(_match(d.get("server") or "", server) and _match(d.get("namespace") or "",
                                                                namespace)
               for d in (project.get("spec") or {}).get("destinations") or [])


def refusals(project: Obj, app: Obj, docs: list[Doc]) -> list[str]:
    """Why Argo CD would refuse to sync ``docs`` as ``app`` of ``project`` (empty: it would
    not): the Application's source and destination, then each object's kind and namespace."""
    out = []
    spec, dest = app["spec"], app["spec"]["destination"]
    if not any(_match(r, spec["source"]["repoURL"]) for r in project["spec"]["sourceRepos"]):
        out.append(f"source {spec['source']['repoURL']} not in sourceRepos")
    if not destination_permitted(project, dest["server"], dest.get("namespace") or ""):
        out.append(f"destination {dest.get('namespace')} not permitted")
    for d in docs:
        namespace = d.namespace or (dest.get("namespace") or "" if d.kind != "Namespace" else "")
        if not kind_permitted(project, d.group, d.kind, d.name, bool(namespace)):
            out.append(f"{d.path}: kind {d.group}/{d.kind} {d.name} not permitted")
        elif namespace and not destination_permitted(project, dest["server"], namespace):
            out.append(f"{d.path}: namespace {namespace} not permitted")
    return out


# --- the sealed files --------------------------------------------------------------------


def example_key() -> SealingKey:
    (key,) = load_private_keys(KEY_FILE.read_bytes(), str(KEY_FILE))
    return key


def sealed_values(team: str, env: str, revision: int = 1) -> dict[str, str]:
    """The plaintext of a team environment's SealedSecret at a given revision (demo values:
    revision 1 is what the tree holds)."""
    return {"api-key": f"{team}-{env}-demo-api-key-r{revision}"}


def seal(team: str, env: str, revision: int = 1, key: SealingKey | None = None) -> Obj:
    """The SealedSecret ``api-key`` of ``<team>-<env>`` (strict scope) at ``revision``."""
    key = key or example_key()
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": SEALED_NAME, "namespace": f"{team}-{env}",
                           "labels": {"team": team}},
              "stringData": sealed_values(team, env, revision)}
    return seal_secret(secret, key.public_key, key.fingerprint)


def sealed_path(team: str, env: str) -> Path:
    return EXAMPLE / "teams" / team / env / f"{SEALED_NAME}.yaml"


HEADER = """\
# Sealed with `secretsync seal` to the public TEST key of this example
# (tests/integration/data/gitops-example-key.pem); only that key opens it. In your fork, seal
# your own values with your cluster's certificate -- see ../../../README.md.
"""


def reseal() -> None:
    key = example_key()
    for team in TEAMS:
        for env in ENVS:
            body = yaml.safe_dump(seal(team, env, key=key), sort_keys=False, width=1000)
            sealed_path(team, env).write_text(HEADER + body)
            print(f"wrote {sealed_path(team, env).relative_to(REPO)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["reseal"]:
        sys.exit("usage: python -m tests.integration._gitops reseal")
    reseal()
