"""ExternalSecrets end to end: the controller runs as its ServiceAccount (deploy/ RBAC) against
the sandbox API server and its OpenBao. Each test gets a namespace, a KV v2 mount, a
SecretStore and a controller watching that namespace; at the end nothing written to Vault may
appear in the controller's log, Events or statuses."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from secretsync.reconcile import external as rx
from secretsync.reconcile.external import ANN_OWNER, ANN_RESTARTED_AT
from tests.integration._controller import CONTROLLER_NS, install_rbac
from tests.integration._external import (
    MARK,
    World,
    hash_key_secret,
    running_controller,
    sandbox_world,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(sandbox: Any, crds: list[str], k8s: Any) -> Kube:
    install_rbac(k8s)
    return Kube.from_config(str(sandbox.kubeconfig))


@pytest.fixture
def world(
    sandbox: Any,
    admin: Kube,
    namespace: str,
    vault_mount: str,
    tmp_path: Path,
    token_kubeconfig: Any,
) -> Iterator[World]:
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path)
    with running_controller(w, token_kubeconfig, before_start=w.apply_store):
        yield w


def test_data_datafrom_template(world: World) -> None:
    w = world
    v1 = w.put(
        "db",
        {"user": "admin", "password": f"pw1-{MARK}", "nested": {"port": 5432, "host": "db.local"}},
    )
    w.put(
        "db",
        {"user": "admin", "password": f"pw2-{MARK}", "nested": {"port": 5432, "host": "db.local"}},
    )
    w.put(
        "blob",
        {
            "b64": base64.b64encode(b"\x00\x01bin").decode(),
            "url": base64.urlsafe_b64encode(b"\xfb\xffx").decode(),
        },
    )
    w.put("team/alpha", {"k": f"a-{MARK}"})
    w.put("team/beta", {"k": "b"})
    w.put("other/gamma", {"k": "g"})
    w.apply_es(
        "app",
        {
            "refreshInterval": "1h",
            "target": {
                "name": "app-secret",
                "template": {
                    "type": "kubernetes.io/basic-auth",
                    "mergePolicy": "Merge",
                    "metadata": {"labels": {"team": "x"}, "annotations": {"note": "templated"}},
                    "data": {
                        "username": "{{ user }}",
                        "dsn": "pg://{{ user }}@{{ host }}:{{ port }}",
                        "enc": "{{ bin | b64enc }}",
                    },
                },
            },
            "data": [
                {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
                {
                    "secretKey": "old",
                    "remoteRef": {"key": "db", "property": "password", "version": str(v1)},
                },
                {"secretKey": "host", "remoteRef": {"key": "db", "property": "nested.host"}},
                {"secretKey": "port", "remoteRef": {"key": "db", "property": "nested.port"}},
                {
                    "secretKey": "bin",
                    "remoteRef": {"key": "blob", "property": "b64", "decodingStrategy": "Base64"},
                },
                {
                    "secretKey": "url",
                    "remoteRef": {
                        "key": "blob",
                        "property": "url",
                        "decodingStrategy": "Base64URL",
                    },
                },
            ],
            "dataFrom": [
                {
                    "extract": {"key": "db"},
                    "rewrite": [{"regexp": {"source": "^(.*)$", "target": "db_$1"}}],
                },
                {"find": {"path": "team", "name": {"regexp": "al"}}},
            ],
        },
    )
    es = w.wait_ready("app")
    s = w.secret("app-secret")
    assert s is not None
    assert s["type"] == "kubernetes.io/basic-auth"
    assert s["metadata"]["labels"] == {"team": "x", api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}
    assert s["metadata"]["annotations"]["note"] == "templated"
    assert s["metadata"]["annotations"][ANN_OWNER] == "app"
    assert s["metadata"]["ownerReferences"][0]["uid"] == es["metadata"]["uid"]
    d = w.data("app-secret")
    assert d["user"] == b"admin" and d["username"] == b"admin"
    assert d["old"] == f"pw1-{MARK}".encode(), "remoteRef.version selects the old version"
    assert d["db_password"] == f"pw2-{MARK}".encode()
    assert json.loads(d["db_nested"]) == {"port": 5432, "host": "db.local"}
    assert d["dsn"] == b"pg://admin@db.local:5432"
    assert d["bin"] == b"\x00\x01bin" and d["url"] == b"\xfb\xffx"
    assert json.loads(d["team_alpha"]) == {"k": f"a-{MARK}"}
    assert "team_beta" not in d and "other_gamma" not in d
    assert d["enc"] == base64.b64encode(b"\x00\x01bin".decode("utf-8", "replace").encode())
    st = es["status"]
    assert st["observedGeneration"] == es["metadata"]["generation"]
    assert st["syncedDataHash"] == s["metadata"]["annotations"][api.ANN_DATA_HASH]
    assert st["binding"] == {"name": "app-secret"}


def test_hash_is_keyed_with_the_controllers_key_secret(world: World) -> None:
    """The controller created its data-hash key Secret in its own namespace at startup, and
    the status hash is the HMAC under that key: without the key (readers of the
    ExternalSecret do not have it) a short value cannot be guessed from the hash."""
    w = world
    assert w.controller is not None
    name = hash_key_secret(w.controller)
    secret = w.kube.get_secret(CONTROLLER_NS, name)
    assert secret is not None, f"Secret {CONTROLLER_NS}/{name} not created at startup"
    assert secret["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE
    key = base64.b64decode(secret["data"][api.HASH_KEY_DATA_KEY])
    assert len(key) == api.HASH_KEY_BYTES
    w.put("short", {"pin": f"1234-{MARK}"})
    w.apply_es(
        "short", {"data": [{"secretKey": "pin", "remoteRef": {"key": "short", "property": "pin"}}]}
    )
    es = w.wait_ready("short")
    data = w.data("short")
    assert data == {"pin": f"1234-{MARK}".encode()}
    uid = es["metadata"]["uid"]
    got = es["status"]["syncedDataHash"]
    assert got == rx.data_hash(data, "Opaque", uid, key)
    assert got != rx.data_hash(data, "Opaque", uid, bytes(api.HASH_KEY_BYTES))
    assert w.secret("short")["metadata"]["annotations"][api.ANN_DATA_HASH] == got  # type: ignore[index]


def test_rotation_reaches_secret_and_restarts_deployment(world: World) -> None:
    w = world
    w.kube.request(
        "POST",
        f"/apis/apps/v1/namespaces/{w.namespace}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
    )
    w.put("rot", {"v": f"one-{MARK}"})
    w.apply_es(
        "rot",
        {
            "refreshInterval": "2s",
            "data": [{"secretKey": "v", "remoteRef": {"key": "rot", "property": "v"}}],
            "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}],
        },
    )
    first = w.wait_ready("rot")
    w.wait_data("rot", {"v": f"one-{MARK}".encode()})

    def template_annotations() -> dict[str, str]:
        dep = w.kube.request("GET", f"/apis/apps/v1/namespaces/{w.namespace}/deployments/web")
        return dict(dep["spec"]["template"]["metadata"].get("annotations") or {})

    assert ANN_RESTARTED_AT not in template_annotations(), "first sync is not a change"
    w.put("rot", {"v": f"two-{MARK}"})
    start = time.monotonic()
    w.wait_data("rot", {"v": f"two-{MARK}".encode()}, timeout=20)
    # within one refresh interval (2 s), with generous slack for a loaded CI machine
    assert time.monotonic() - start < 2 + 6, "rotation visible within one interval"
    wait_for("restart annotation", lambda: template_annotations().get(ANN_RESTARTED_AT), 10)

    # the status patch follows the restart patch and the Updated event: wait for it
    def rehashed() -> dict[str, Any] | None:
        es = w.es("rot")
        changed = es["status"]["syncedDataHash"] != first["status"]["syncedDataHash"]
        return es if changed else None

    later = wait_for("status hash to change", rehashed, 10)
    assert later["status"]["lastChangeTime"] >= first["status"]["lastChangeTime"]
    reasons = {e.get("reason") for e in w.events()}
    assert {"Updated", "RolloutRestart"} <= reasons


def test_no_churn_over_several_intervals(world: World) -> None:
    w = world
    assert w.controller is not None
    w.put("calm", {"v": f"steady-{MARK}"})
    w.apply_es(
        "calm",
        {
            "refreshInterval": "1s",
            "data": [{"secretKey": "v", "remoteRef": {"key": "calm", "property": "v"}}],
        },
    )
    w.wait_ready("calm")
    w.wait_data("calm", {"v": f"steady-{MARK}".encode()})
    time.sleep(1.5)  # let the status write of the first sync settle
    s_rv = w.secret("calm")["metadata"]["resourceVersion"]  # type: ignore[index]
    es_rv = w.es("calm")["metadata"]["resourceVersion"]
    n_events = len(w.events())
    writes = w.controller.metric("secretsync_external_api_writes_total")
    reads = w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="get")
    time.sleep(5.5)
    assert (
        w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="get")
        >= reads + 3
    ), "refreshes did happen"
    assert w.secret("calm")["metadata"]["resourceVersion"] == s_rv  # type: ignore[index]
    assert w.es("calm")["metadata"]["resourceVersion"] == es_rv
    assert len(w.events()) == n_events
    assert w.controller.metric("secretsync_external_api_writes_total") == writes


def test_drift_repair(world: World) -> None:
    w = world
    w.put("drift", {"v": f"orig-{MARK}"})
    w.apply_es(
        "drift",
        {
            "refreshInterval": "1h",
            "data": [{"secretKey": "v", "remoteRef": {"key": "drift", "property": "v"}}],
        },
    )
    w.wait_ready("drift")
    want = {"v": f"orig-{MARK}".encode()}
    w.wait_data("drift", want)
    # edited data
    w.kube.patch_secret(
        w.namespace, "drift", {"data": {"v": base64.b64encode(b"hacked").decode(), "extra": "eA=="}}
    )
    w.wait_data("drift", want, timeout=10)
    # deleted
    w.kube.delete_secret(w.namespace, "drift")
    wait_for("recreated", lambda: w.secret("drift"), 10)
    w.wait_data("drift", want, timeout=10)
    # our annotation edited, then our label removed
    w.kube.patch_secret(
        w.namespace, "drift", {"metadata": {"annotations": {api.ANN_DATA_HASH: "bogus"}}}
    )
    wait_for(
        "hash restored",
        lambda: (
            w.secret("drift")["metadata"]["annotations"][  # type: ignore[index]
                api.ANN_DATA_HASH
            ]
            != "bogus"
        ),
        10,
    )
    w.kube.patch_secret(
        w.namespace, "drift", {"metadata": {"labels": {api.LABEL_MANAGED_BY: None}}}
    )
    wait_for(
        "label restored",
        lambda: (
            (w.secret("drift")["metadata"].get("labels") or {}).get(  # type: ignore[index]
                api.LABEL_MANAGED_BY
            )
            == api.MANAGED_BY_VALUE
        ),
        10,
    )
    assert "Repaired" in {e.get("reason") for e in w.events()}
    # a Secret of the wrong type (type is immutable in place: it is recreated), handed over
    w.kube.create_secret(
        w.namespace,
        {
            "metadata": {"name": "typed", "annotations": {api.ANN_MANAGED: "true"}},
            "type": "kubernetes.io/ssh-auth",
            "data": {"ssh-privatekey": "eA=="},
        },
    )
    w.apply_es(
        "typed", {"data": [{"secretKey": "v", "remoteRef": {"key": "drift", "property": "v"}}]}
    )
    w.wait_ready("typed")
    assert (w.secret("typed") or {}).get("type") == "Opaque"
    w.wait_data("typed", want)


def test_force_sync_and_refresh_policies(world: World) -> None:
    w = world
    w.put("p", {"v": f"a-{MARK}"})
    ref = [{"secretKey": "v", "remoteRef": {"key": "p", "property": "v"}}]
    w.apply_es("manual", {"refreshInterval": "0", "data": ref})
    w.apply_es("once", {"refreshInterval": "1s", "refreshPolicy": "CreatedOnce", "data": ref})
    w.apply_es("onchange", {"refreshInterval": "1s", "refreshPolicy": "OnChange", "data": ref})
    for n in ("manual", "once", "onchange"):
        w.wait_ready(n)
        w.wait_data(n, {"v": f"a-{MARK}".encode()})
    w.put("p", {"v": f"b-{MARK}"})
    time.sleep(3)
    for n in ("manual", "once", "onchange"):
        assert w.data(n) == {"v": f"a-{MARK}".encode()}, f"{n} must not refresh by itself"
    w.apply_es(
        "manual", {"refreshInterval": "0", "data": ref}, annotations={api.ANN_FORCE_SYNC: "1"}
    )
    w.wait_data("manual", {"v": f"b-{MARK}".encode()}, timeout=10)
    # OnChange: a spec change (new generation) refreshes
    w.apply_es("onchange", {"refreshInterval": "2s", "refreshPolicy": "OnChange", "data": ref})
    w.wait_data("onchange", {"v": f"b-{MARK}".encode()}, timeout=10)
    # CreatedOnce: even a deleted Secret comes back with... the current value, once
    w.kube.delete_secret(w.namespace, "once")
    wait_for("once recreated", lambda: w.secret("once"), 10)
    w.put("p", {"v": f"c-{MARK}"})
    time.sleep(2.5)
    assert w.data("once") == {"v": f"b-{MARK}".encode()}
    # force-sync again with the same value does nothing; a new value syncs
    w.apply_es(
        "manual", {"refreshInterval": "0", "data": ref}, annotations={api.ANN_FORCE_SYNC: "2"}
    )
    w.wait_data("manual", {"v": f"c-{MARK}".encode()}, timeout=10)


def test_creation_policies(world: World) -> None:
    w = world
    w.put("c", {"v": f"val-{MARK}"})
    ref = [{"secretKey": "v", "remoteRef": {"key": "c", "property": "v"}}]
    # Orphan: no owner reference
    w.apply_es("orphan", {"target": {"creationPolicy": "Orphan"}, "data": ref})
    w.wait_ready("orphan")
    assert not w.secret("orphan")["metadata"].get("ownerReferences")  # type: ignore[index]
    # Merge: into someone else's Secret, keeping its keys and type
    w.kube.create_secret(
        w.namespace, {"metadata": {"name": "shared"}, "type": "Opaque", "data": {"theirs": "eA=="}}
    )
    w.apply_es("merge", {"target": {"name": "shared", "creationPolicy": "Merge"}, "data": ref})
    w.wait_ready("merge")
    assert w.data("shared") == {"theirs": b"x", "v": f"val-{MARK}".encode()}
    # Merge into a missing Secret: clear condition, nothing created
    w.apply_es(
        "merge-missing", {"target": {"name": "nope", "creationPolicy": "Merge"}, "data": ref}
    )
    c = w.wait_ready("merge-missing", "False", "TargetMissing")
    assert w.secret("nope") is None
    assert "nope" in c["status"]["conditions"][0]["message"]
    # None: values fetched, no Secret written
    w.apply_es("none", {"target": {"creationPolicy": "None"}, "data": ref})
    w.wait_ready("none")
    assert w.secret("none") is None
    # Owner over a foreign Secret: refused, the Secret is left alone
    w.kube.create_secret(w.namespace, {"metadata": {"name": "foreign"}, "data": {"a": "eA=="}})
    w.apply_es("foreign", {"data": ref})
    w.wait_ready("foreign", "False", "TargetNotOwned")
    assert w.data("foreign") == {"a": b"x"}


def test_deletion_policy_delete_and_not_found(world: World) -> None:
    w = world
    w.put("gone", {"v": f"x-{MARK}"})
    ref = [{"secretKey": "v", "remoteRef": {"key": "gone", "property": "v"}}]
    w.apply_es(
        "del", {"refreshInterval": "1s", "target": {"deletionPolicy": "Delete"}, "data": ref}
    )
    w.apply_es("keep", {"refreshInterval": "1s", "data": ref})
    w.wait_ready("del")
    w.wait_ready("keep")
    w.vault.secrets.kv.v2.delete_metadata_and_all_versions("gone", mount_point=w.mount)
    wait_for("Secret deleted", lambda: w.secret("del") is None, 15)
    assert w.ready("del")["reason"] == "Deleted"  # type: ignore[index]
    w.wait_ready("keep", "False", "SecretNotFound", timeout=15)
    assert w.data("keep") == {"v": f"x-{MARK}".encode()}, "Retain keeps the last good Secret"
    msg = w.ready("keep")["message"]  # type: ignore[index]
    assert "gone" in msg and MARK not in msg


def test_bad_input_gives_clear_conditions(world: World) -> None:
    w = world
    w.put("t", {"v": f"x-{MARK}"})
    w.apply_es(
        "tmpl",
        {
            "target": {"template": {"data": {"a": "{{ missing_name }}"}}},
            "data": [{"secretKey": "v", "remoteRef": {"key": "t", "property": "v"}}],
        },
    )
    c = w.wait_ready("tmpl", "False", "InvalidTemplate")
    assert "'a'" in c["status"]["conditions"][0]["message"]
    w.apply_es(
        "nostore",
        {
            "secretStoreRef": {"name": "absent"},
            "data": [{"secretKey": "v", "remoteRef": {"key": "t"}}],
        },
    )
    w.wait_ready("nostore", "False", "StoreNotFound")
    w.apply_es(
        "badprop", {"data": [{"secretKey": "v", "remoteRef": {"key": "t", "property": "nope"}}]}
    )
    c = w.wait_ready("badprop", "False", "SecretNotFound")
    assert "nope" in c["status"]["conditions"][0]["message"]
    assert any(
        e.get("type") == "Warning" and e.get("reason") == "InvalidTemplate" for e in w.events()
    )


def test_bad_store_credentials_not_hammered(world: World) -> None:
    w = world
    assert w.controller is not None
    w.kube.create_secret(
        w.namespace,
        {"metadata": {"name": "bad-token"}, "data": {"token": base64.b64encode(b"nope").decode()}},
    )
    w.apply_store(
        "badvault",
        {
            "vault": {
                "server": w.vault_addr,
                "path": w.mount,
                "auth": {"tokenSecretRef": {"name": "bad-token", "key": "token"}},
            }
        },
    )
    for i in range(5):
        w.apply_es(
            f"bad{i}",
            {
                "secretStoreRef": {"name": "badvault"},
                "refreshInterval": "1s",
                "data": [{"secretKey": "v", "remoteRef": {"key": "t"}}],
            },
        )
    for i in range(5):
        w.wait_ready(f"bad{i}", "False", "StoreNotReady")

    def store_ready() -> dict[str, Any] | None:
        obj = w.kube.get_custom(api.GROUP, api.VERSION, api.PLURAL_STORE, w.namespace, "badvault")
        conds = ((obj or {}).get("status") or {}).get("conditions") or []
        return conds[0] if conds and conds[0]["status"] == "False" else None

    cond = wait_for("store not ready", store_ready, 10)
    assert cond["reason"] == "BackendAuthFailed"
    calls = w.controller.metric(
        "secretsync_backend_calls_total", backend="vault", operation="validate"
    )
    time.sleep(4)
    # 5 objects refreshing every second for 4 s: without the store backoff that would be ~20
    assert (
        w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="validate")
        - calls
        <= 2
    )


def test_single_flight_shares_reads(world: World) -> None:
    w = world
    assert w.controller is not None
    w.put("hot", {"v": f"h-{MARK}"})
    for i in range(10):
        w.apply_es(
            f"hot{i}",
            {
                "refreshInterval": "3s",
                "data": [{"secretKey": "v", "remoteRef": {"key": "hot", "property": "v"}}],
            },
        )
    for i in range(10):
        w.wait_ready(f"hot{i}")
    before = w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="get")
    time.sleep(9.2)  # three refresh cycles of ten objects
    reads = (
        w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="get")
        - before
    )
    # ~1 read per cycle (3); without sharing it would be 10 per cycle (30)
    assert 2 <= reads <= 6, f"expected ~1 read per cycle for 10 objects, got {reads}"


def test_deletion_policy_merge_and_immutable_target(world: World) -> None:
    w = world
    w.put("a", {"v": f"a-{MARK}"})
    w.put("b", {"v": base64.b64encode(f"b-{MARK}".encode()).decode()})
    w.apply_es(
        "merged",
        {
            "refreshInterval": "1s",
            "target": {"deletionPolicy": "Merge"},
            "data": [
                {"secretKey": "a", "remoteRef": {"key": "a", "property": "v"}},
                {
                    "secretKey": "b",
                    "remoteRef": {"key": "b", "property": "v", "decodingStrategy": "Auto"},
                },
            ],
        },
    )
    w.wait_ready("merged")
    w.wait_data("merged", {"a": f"a-{MARK}".encode(), "b": f"b-{MARK}".encode()})
    w.vault.secrets.kv.v2.delete_metadata_and_all_versions("b", mount_point=w.mount)
    w.wait_data("merged", {"a": f"a-{MARK}".encode()}, timeout=15)
    assert w.ready("merged")["status"] == "True"  # type: ignore[index]

    w.apply_es(
        "frozen",
        {
            "refreshInterval": "1s",
            "target": {"immutable": True},
            "data": [{"secretKey": "a", "remoteRef": {"key": "a", "property": "v"}}],
        },
    )
    w.wait_ready("frozen")
    first = w.secret("frozen")
    assert first is not None and first.get("immutable") is True
    w.put("a", {"v": f"a2-{MARK}"})
    w.wait_data("frozen", {"a": f"a2-{MARK}".encode()}, timeout=15)
    second = w.secret("frozen")
    assert second is not None and second.get("immutable") is True
    assert second["metadata"]["uid"] != first["metadata"]["uid"], "recreated, not edited"


def test_secret_store_cannot_borrow_other_namespaces_credentials(world: World) -> None:
    w = world
    w.put("t", {"v": f"x-{MARK}"})
    w.apply_store(
        "borrow",
        {
            "vault": {
                "server": w.vault_addr,
                "path": w.mount,
                "auth": {
                    "tokenSecretRef": {
                        "name": "vault-token",
                        "key": "token",
                        "namespace": "kube-system",
                    }
                },
            }
        },
    )
    w.apply_es(
        "borrow",
        {
            "secretStoreRef": {"name": "borrow"},
            "data": [{"secretKey": "v", "remoteRef": {"key": "t"}}],
        },
    )
    es = w.wait_ready("borrow", "False", "StoreNotReady")
    assert "own namespace" in es["status"]["conditions"][0]["message"]
    assert w.secret("borrow") is None
