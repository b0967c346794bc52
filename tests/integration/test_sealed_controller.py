"""The SealedSecret controller against the sandbox's real API server.

The controller runs as a subprocess (``python -m secretsync controller``) authenticated as its
ServiceAccount with a TokenRequest token, after the RBAC of ``deploy/`` was applied to a fresh
controller namespace: every test therefore also proves the RBAC is sufficient. Each test
watches only its own namespace (``--namespace``) so tests do not see each other's objects.
Every controller log is scanned for the plaintext values at teardown.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.demo import PY, ControllerProcess, apply_docs, render_kustomization
from secretsync import api
from secretsync.keys import SealingKey, secret_body_for_key
from secretsync.kube import Kube
from secretsync.sealing import seal_secret
from tests.integration._controller import wait_for
from tests.keypairs import keypair

pytestmark = pytest.mark.integration

VALUE = "pl41ntext-V4LUE-never-logged"
OTHER = "second-s3cret-value"
SECRET_VALUES = (VALUE, OTHER)
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding"}
SA = "secretsync-controller"
G, V, P = api.GROUP, api.VERSION, api.PLURAL_SEALED


@pytest.fixture(scope="session")
def kube(sandbox: Any, crds: list[str]) -> Kube:
    return Kube.from_config(str(sandbox.kubeconfig))


def install_controller_namespace(kube: Kube, keys: list[SealingKey]) -> tuple[str, list[Any]]:
    tag = uuid.uuid4().hex[:6]
    ns = f"ssc-{tag}"
    docs = render_kustomization(namespace=ns, suffix=f"-{tag}")
    apply_docs(kube, docs, kinds=RBAC_KINDS)
    for key in keys:
        kube.create_secret(ns, secret_body_for_key(key, namespace=ns))
    return ns, [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Namespace")]


def uninstall(kube: Kube, docs: list[Any]) -> None:
    for d in docs:
        kube.delete_object(d)


@pytest.fixture(scope="session")
def ctl_ns(kube: Kube) -> Iterator[str]:
    """A controller namespace with the deploy/ RBAC and one pre-made key (keypair 0)."""
    ns, cleanup = install_controller_namespace(kube, [keypair(0).key])
    yield ns
    uninstall(kube, cleanup)


@pytest.fixture(scope="session")
def sa_kubeconfig(ctl_ns: str, token_kubeconfig: Any, tmp_path_factory: Any) -> Path:
    path: Path = token_kubeconfig(ctl_ns, SA, tmp_path_factory.mktemp("sa") / "kubeconfig")
    return path


Start = Callable[..., ControllerProcess]


@pytest.fixture
def start_controller(
    namespace: str, ctl_ns: str, sa_kubeconfig: Path, tmp_path: Path
) -> Iterator[Start]:
    """``start_controller(extra=(), wait=True, **kw)``: a controller watching the test's
    namespace. All are stopped at teardown and their logs scanned for plaintext."""
    started: list[ControllerProcess] = []

    def start(extra: tuple[str, ...] = (), wait: bool = True, *,
              controller_namespace: str | None = None, kubeconfig: Path | None = None,
              ready: str = "ready") -> ControllerProcess:
        ctl = ControllerProcess(
            kubeconfig or sa_kubeconfig, controller_namespace=controller_namespace or ctl_ns,
            namespace=namespace, log_path=tmp_path / f"controller-{len(started)}.log",
            extra=("--key-poll-interval", "1", "--retry-interval", "2", *extra),
        ).start()
        started.append(ctl)
        if wait:
            ctl.wait_ready(60, ready)
        return ctl

    yield start
    for ctl in started:
        ctl.stop()
    for ctl in started:
        log = ctl.log()
        for value in SECRET_VALUES:
            assert value not in log, f"plaintext found in {ctl.log_path}"
        # our code never logs a traceback (kopf's own watch-stream retries under load may)
        for block in log.split("Traceback (most recent call last):")[1:]:
            frames = [ln for ln in block.splitlines()[:60] if ln.strip().startswith("File ")]
            assert not any("/secretsync/" in f for f in frames), (
                f"traceback from secretsync code in {ctl.log_path}:\n{block[:3000]}")


def plain_secret(name: str, ns: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, **meta},
            "stringData": {"password": VALUE, "user": "admin"}}


def seal(name: str, ns: str, key: SealingKey | None = None, scope: str | None = None,
         **meta: Any) -> dict[str, Any]:
    k = key or keypair(0).key
    return seal_secret(plain_secret(name, ns, **meta), k.public_key, k.fingerprint, scope=scope)


def create(kube: Kube, doc: dict[str, Any]) -> dict[str, Any]:
    return kube.create_custom(G, V, P, doc["metadata"]["namespace"], doc)


def get_sealed(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get_custom(G, V, P, ns, name)


def condition(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    obj = get_sealed(kube, ns, name) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Synced":
            return dict(c)
    return None


def wait_condition(kube: Kube, ns: str, name: str, status: str, reason: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = condition(kube, ns, name)
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return c
        return None

    return wait_for(check, timeout, f"{ns}/{name} Synced={status} {reason or ''}")  # type: ignore[no-any-return]


def metric(ctl: ControllerProcess, name: str) -> float:
    for line in ctl.http("/metrics")[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def values(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


# --- unsealing -------------------------------------------------------------------------------


def test_unseal_with_owner_template_type_immutable(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    first = start_controller()
    doc = seal("db", namespace, labels={"team": "a"}, annotations={"note": "hello"})
    doc["spec"]["template"]["type"] = "kubernetes.io/basic-auth"
    doc["spec"]["template"]["data"] = {"username": "{{ user }}",
                                       "dsn": "pg://{{ user }}:{{ password }}@db/app"}
    created = create(kube, doc)
    secret = wait_for(lambda: kube.get_secret(namespace, "db"), what="Secret db")
    assert values(secret) == {"password": VALUE.encode(), "user": b"admin",
                              "username": b"admin", "dsn": f"pg://admin:{VALUE}@db/app".encode()}
    assert secret["type"] == "kubernetes.io/basic-auth"
    meta = secret["metadata"]
    assert meta["labels"]["team"] == "a"
    assert meta["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE
    assert meta["annotations"]["note"] == "hello"
    (ref,) = meta["ownerReferences"]
    assert ref["uid"] == created["metadata"]["uid"]
    assert ref["controller"] is True and ref["kind"] == "SealedSecret"
    cond = wait_condition(kube, namespace, "db", "True", "Unsealed")
    assert get_sealed(kube, namespace, "db")["status"]["observedGeneration"] == 1  # type: ignore[index]
    assert cond["observedGeneration"] == 1
    events = wait_for(lambda: [e for e in kube.list_events(namespace)
                               if e["reason"] == "Unsealed"], what="Unsealed event")
    assert events[0]["involvedObject"]["name"] == "db"

    # immutable: a new generation with immutable=true makes an immutable Secret
    imm = seal("frozen", namespace)
    imm["spec"]["template"]["immutable"] = True
    create(kube, imm)
    frozen = wait_for(lambda: kube.get_secret(namespace, "frozen"), what="Secret frozen")
    assert frozen["immutable"] is True
    # no churn: nothing is written once in sync
    rv = kube.get_secret(namespace, "db")["metadata"]["resourceVersion"]  # type: ignore[index]
    srv = get_sealed(kube, namespace, "db")["metadata"]["resourceVersion"]  # type: ignore[index]
    time.sleep(3)
    assert kube.get_secret(namespace, "db")["metadata"]["resourceVersion"] == rv  # type: ignore[index]
    assert get_sealed(kube, namespace, "db")["metadata"]["resourceVersion"] == srv  # type: ignore[index]
    # ... and a restarted controller finds everything in sync and writes nothing either
    first.stop()
    events_before = len(kube.list_events(namespace))
    second = start_controller()
    wait_for(lambda: metric(second, 'secretsync_unseal_total{outcome="ok"}') >= 2,
             what="both objects reconciled after restart")
    time.sleep(1)
    assert kube.get_secret(namespace, "db")["metadata"]["resourceVersion"] == rv  # type: ignore[index]
    assert get_sealed(kube, namespace, "db")["metadata"]["resourceVersion"] == srv  # type: ignore[index]
    assert len(kube.list_events(namespace)) == events_before


def test_spec_update_updates_secret(kube: Kube, namespace: str, start_controller: Start) -> None:
    start_controller()
    create(kube, seal("app", namespace))
    wait_condition(kube, namespace, "app", "True")
    k = keypair(0).key
    newer = seal_secret({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "app", "namespace": namespace},
                         "stringData": {"password": OTHER}}, k.public_key, k.fingerprint)
    kube.patch_custom(G, V, P, namespace, "app",
                      {"spec": {"encryptedData": {**newer["spec"]["encryptedData"],
                                                  "user": None}}})
    wait_for(lambda: values(kube.get_secret(namespace, "app") or {}) ==
             {"password": OTHER.encode()}, what="updated Secret")
    cond = wait_condition(kube, namespace, "app", "True")
    assert cond["observedGeneration"] == 2


# --- failures ---------------------------------------------------------------------------------


def test_each_failure_gets_its_own_condition_and_valid_objects_keep_syncing(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    start_controller()
    ok = seal("valid", namespace)

    tampered = seal("tampered", namespace)
    raw = bytearray(base64.b64decode(tampered["spec"]["encryptedData"]["password"]))
    raw[-1] ^= 0xFF
    tampered["spec"]["encryptedData"]["password"] = base64.b64encode(bytes(raw)).decode()

    wrong_scope = seal("wrong-scope", namespace, scope=api.SCOPE_NAMESPACE)
    for a in (api.ANN_SCOPE, api.BITNAMI_ANN_NAMESPACE_WIDE):
        wrong_scope["metadata"]["annotations"].pop(a, None)

    wrong_ns = seal("wrong-ns", "some-other-namespace")
    wrong_ns["metadata"]["namespace"] = namespace

    garbage = seal("garbage", namespace)
    garbage["spec"]["encryptedData"]["password"] = "this is not a sealed item"

    bad_template = seal("bad-template", namespace)
    bad_template["spec"]["template"]["data"] = {"x": "{{ no_such_item }}"}

    other_key = seal("other-key", namespace, key=keypair(3).key)

    kube.create_secret(namespace, {"metadata": {"name": "taken"}, "stringData": {"a": "b"}})
    taken = seal("taken", namespace)

    for d in (tampered, wrong_scope, wrong_ns, garbage, bad_template, other_key, taken, ok):
        create(kube, d)

    wait_condition(kube, namespace, "valid", "True", "Unsealed")
    expected = {
        "tampered": "DecryptFailed",
        "wrong-scope": "ScopeMismatch",
        "wrong-ns": "DecryptFailed",
        "garbage": "DecryptFailed",
        "bad-template": "InvalidTemplate",
        "other-key": "DecryptFailed",
        "taken": "UnmanagedSecretExists",
    }
    for name, reason in expected.items():
        cond = wait_condition(kube, namespace, name, "False", reason)
        assert cond["message"], name
        assert VALUE not in cond["message"]
        if name != "taken":
            assert kube.get_secret(namespace, name) is None, name
    assert "another name/namespace" in condition(kube, namespace, "wrong-ns")["message"]  # type: ignore[index]
    assert "does not hold" in condition(kube, namespace, "other-key")["message"]  # type: ignore[index]
    # the unmanaged Secret is left alone
    assert values(kube.get_secret(namespace, "taken")) == {"a": b"b"}  # type: ignore[arg-type]
    warnings = wait_for(lambda: {e["involvedObject"]["name"] for e in kube.list_events(namespace)
                                 if e["type"] == "Warning"} >= set(expected), what="warnings")
    assert warnings
    # a valid object created after the failures still syncs
    create(kube, seal("valid-later", namespace))
    wait_condition(kube, namespace, "valid-later", "True")


def test_unmanaged_secret_hand_over(kube: Kube, namespace: str, start_controller: Start) -> None:
    start_controller()
    kube.create_secret(namespace, {"metadata": {"name": "legacy"},
                                   "stringData": {"old": "value"}})
    create(kube, seal("legacy", namespace))
    wait_condition(kube, namespace, "legacy", "False", "UnmanagedSecretExists")
    assert values(kube.get_secret(namespace, "legacy")) == {"old": b"value"}  # type: ignore[arg-type]
    kube.patch_secret(namespace, "legacy",
                      {"metadata": {"annotations": {api.ANN_MANAGED: "true"}}})
    wait_condition(kube, namespace, "legacy", "True", "Unsealed", timeout=30)
    secret = kube.get_secret(namespace, "legacy")
    assert secret is not None
    assert values(secret) == {"password": VALUE.encode(), "user": b"admin"}
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "SealedSecret"


# --- self-healing and garbage collection ------------------------------------------------------


def test_self_healing_after_delete_and_edits(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    ctl = start_controller()
    create(kube, seal("heal", namespace, labels={"team": "a"}, annotations={"note": "n"}))
    first = wait_for(lambda: kube.get_secret(namespace, "heal"), what="Secret")
    want = values(first)

    kube.delete_secret(namespace, "heal")
    back = wait_for(lambda: (s := kube.get_secret(namespace, "heal"))
                    and s["metadata"]["uid"] != first["metadata"]["uid"] and s,
                    timeout=15, what="recreated Secret")
    assert values(back) == want

    kube.patch_secret(namespace, "heal", {"data": {"password": base64.b64encode(b"x").decode(),
                                                   "added": base64.b64encode(b"y").decode()}})
    wait_for(lambda: values(kube.get_secret(namespace, "heal") or {}) == want, timeout=15,
             what="data restored")

    kube.patch_secret(namespace, "heal", {"metadata": {"labels": {"team": "b", "extra": "1"},
                                                       "annotations": {"note": "changed"}}})

    def meta_restored() -> bool:
        m = (kube.get_secret(namespace, "heal") or {}).get("metadata") or {}
        labels, annotations = m.get("labels") or {}, m.get("annotations") or {}
        return (labels.get("team") == "a" and "extra" not in labels
                and annotations.get("note") == "n")

    wait_for(meta_restored, timeout=15, what="labels/annotations restored")
    # removing our managed-by label takes the Secret out of the label-filtered watch, but the
    # owner's periodic retry is not needed: the label removal itself is an edit we see first
    kube.patch_secret(namespace, "heal", {"metadata": {"labels": {api.LABEL_MANAGED_BY: None}}})
    wait_for(lambda: ((kube.get_secret(namespace, "heal") or {}).get("metadata", {})
                      .get("labels") or {}).get(api.LABEL_MANAGED_BY) == api.MANAGED_BY_VALUE,
             timeout=20, what="managed-by label restored")

    # the type cannot be updated in place; a `kubectl replace --force` with another type
    # (owner reference kept) is turned back into the declared type
    current = kube.get_secret(namespace, "heal")
    assert current is not None and current["type"] == "Opaque"
    replaced = {"apiVersion": "v1", "kind": "Secret", "type": "example.com/other",
                "metadata": {k: current["metadata"][k]
                             for k in ("name", "namespace", "labels", "ownerReferences")},
                "data": current["data"]}
    assert ctl.popen is not None
    os.kill(ctl.popen.pid, signal.SIGSTOP)  # so it cannot restore between delete and create
    try:
        kube.delete_secret(namespace, "heal")
        kube.create_secret(namespace, replaced)
    finally:
        os.kill(ctl.popen.pid, signal.SIGCONT)
    wait_for(lambda: (kube.get_secret(namespace, "heal") or {}).get("type") == "Opaque",
             timeout=20, what="type restored")
    assert values(kube.get_secret(namespace, "heal") or {}) == want


def test_delete_sealed_secret_garbage_collects_secret(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    start_controller()
    create(kube, seal("gc", namespace))
    wait_for(lambda: kube.get_secret(namespace, "gc"), what="Secret")
    kube.delete_custom(G, V, P, namespace, "gc")
    wait_for(lambda: get_sealed(kube, namespace, "gc") is None, timeout=30,
             what="SealedSecret deleted")
    # kube-controller-manager's garbage collector; slow when the machine is loaded
    wait_for(lambda: kube.get_secret(namespace, "gc") is None, timeout=90,
             what="Secret garbage-collected")


# --- keys -------------------------------------------------------------------------------------


def test_new_key_is_picked_up_without_restart(
    kube: Kube, namespace: str, ctl_ns: str, start_controller: Start
) -> None:
    ctl = start_controller()
    k2 = keypair(2).key
    create(kube, seal("new-key", namespace, key=k2))
    wait_condition(kube, namespace, "new-key", "False", "DecryptFailed")
    assert kube.get_secret(namespace, "new-key") is None
    body = secret_body_for_key(k2, namespace=ctl_ns)
    if kube.get_secret(ctl_ns, body["metadata"]["name"]) is None:
        kube.create_secret(ctl_ns, body)
    wait_condition(kube, namespace, "new-key", "True", "Unsealed", timeout=30)
    assert values(kube.get_secret(namespace, "new-key"))["password"] == VALUE.encode()  # type: ignore[arg-type]
    assert ctl.alive()


def test_key_generated_persisted_and_restart_makes_no_duplicates(
    kube: Kube, namespace: str, token_kubeconfig: Any, tmp_path: Path, start_controller: Start
) -> None:
    fresh_ns, cleanup = install_controller_namespace(kube, [])
    try:
        kc = token_kubeconfig(fresh_ns, SA, tmp_path / "fresh.kubeconfig")
        ctl = start_controller(controller_namespace=fresh_ns, kubeconfig=kc)
        keys = kube.list_secrets(fresh_ns, api.LABEL_SEALING_KEY)
        assert len(keys) == 1
        key_secret = keys[0]
        assert key_secret["type"] == "kubernetes.io/tls"
        assert set(key_secret["data"]) == {"tls.crt", "tls.key"}
        cm = kube.get_configmap(fresh_ns, api.DEFAULT_CONTROLLER_NAME + api.CERT_CONFIGMAP_SUFFIX)
        assert cm is not None
        assert cm["data"][api.CERT_CONFIGMAP_KEY] == base64.b64decode(
            key_secret["data"]["tls.crt"]).decode()
        status, body = ctl.http("/v1/cert.pem")
        assert status == 200 and body.decode() == cm["data"][api.CERT_CONFIGMAP_KEY]

        # seal with the published certificate and unseal
        from secretsync.keys import key_from_secret
        k = key_from_secret(key_secret)
        create(kube, seal("gen", namespace, key=k))
        wait_condition(kube, namespace, "gen", "True")

        # a restart mid-run (objects still arriving) converges, with no new key
        for i in range(5):
            create(kube, seal(f"burst-{i}", namespace, key=k))
        ctl.kill()  # a crash mid-run: no clean shutdown, the Lease is not released
        start_controller(controller_namespace=fresh_ns, kubeconfig=kc)
        for i in range(5):
            wait_condition(kube, namespace, f"burst-{i}", "True")
        assert [s["metadata"]["name"] for s in kube.list_secrets(
            fresh_ns, api.LABEL_SEALING_KEY)] == [key_secret["metadata"]["name"]]
    finally:
        uninstall(kube, cleanup)


def test_key_renewal_and_cutoff_keep_old_keys(
    kube: Kube, namespace: str, token_kubeconfig: Any, tmp_path: Path, start_controller: Start
) -> None:
    old = keypair(6).key
    fresh_ns, cleanup = install_controller_namespace(kube, [old])
    try:
        kc = token_kubeconfig(fresh_ns, SA, tmp_path / "renew.kubeconfig")
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
        time.sleep(1.5)  # the cutoff is now in the past and newer than the old key
        ctl = start_controller(("--key-cutoff-time", cutoff, "--key-renew-period", "6s"),
                               controller_namespace=fresh_ns, kubeconfig=kc)
        cm_name = api.DEFAULT_CONTROLLER_NAME + api.CERT_CONFIGMAP_SUFFIX

        def key_names() -> list[str]:
            return sorted(s["metadata"]["name"]
                          for s in kube.list_secrets(fresh_ns, api.LABEL_SEALING_KEY))

        assert len(key_names()) == 2  # the cutoff made a new key at start
        published = kube.get_configmap(fresh_ns, cm_name)
        assert published is not None
        assert published["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] != old.fingerprint
        wait_for(lambda: len(key_names()) >= 3, timeout=30, what="renewed key")
        latest = wait_for(lambda: (c := kube.get_configmap(fresh_ns, cm_name)) and c[
            "metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] != published["metadata"][
            "annotations"][api.ANN_KEY_FINGERPRINT] and c, what="new cert published")
        status, body = ctl.http("/v1/cert.pem")
        assert status == 200 and body.decode() == latest["data"]["cert.pem"]
        # the oldest key still unseals
        create(kube, seal("still-old", namespace, key=old))
        wait_condition(kube, namespace, "still-old", "True")
    finally:
        uninstall(kube, cleanup)


def test_cert_configmap_readable_by_any_user_and_fetch_cert(
    kube: Kube, namespace: str, ctl_ns: str, token_kubeconfig: Any, tmp_path: Path,
    start_controller: Start
) -> None:
    ctl = start_controller()
    cm = wait_for(lambda: kube.get_configmap(ctl_ns, "secretsync-controller-cert"),
                  what="cert ConfigMap")
    pem = cm["data"]["cert.pem"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    # an unprivileged ServiceAccount (only system:authenticated) can fetch it
    nobody = token_kubeconfig(namespace, "nobody", tmp_path / "nobody.kubeconfig")
    out = subprocess.run(
        [PY, "-m", "secretsync", "fetch-cert", "--kubeconfig", str(nobody),
         "--controller-namespace", ctl_ns], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == pem.strip()
    # ... but cannot read the keys
    from secretsync.errors import KubeForbidden
    with pytest.raises(KubeForbidden):
        Kube.from_config(str(nobody)).list_secrets(ctl_ns, api.LABEL_SEALING_KEY)
    status, body = ctl.http("/v1/cert.pem")
    assert status == 200 and body.decode().strip() in {
        pem.strip(), *(c.strip() for c in _published_certs(kube, ctl_ns))}
    # a deleted cert ConfigMap is published again
    kube.request("DELETE", f"/api/v1/namespaces/{ctl_ns}/configmaps/secretsync-controller-cert")
    again = wait_for(lambda: kube.get_configmap(ctl_ns, "secretsync-controller-cert"),
                     timeout=20, what="cert ConfigMap republished")
    assert again["data"]["cert.pem"].strip() == body.decode().strip()


def _published_certs(kube: Kube, ns: str) -> list[str]:
    return [base64.b64decode(s["data"]["tls.crt"]).decode()
            for s in kube.list_secrets(ns, api.LABEL_SEALING_KEY)]


# --- ops endpoints ----------------------------------------------------------------------------


def test_metrics_verify_and_rotate(kube: Kube, namespace: str, start_controller: Start) -> None:
    ctl = start_controller()
    good = seal("m", namespace)
    create(kube, good)
    wait_condition(kube, namespace, "m", "True")
    status, body = ctl.http("/metrics")
    text = body.decode()
    assert status == 200
    assert 'secretsync_unseal_total{outcome="ok"}' in text
    assert "secretsync_unseal_duration_seconds_bucket" in text
    assert "secretsync_sealing_keys" in text
    assert ctl.http("/healthz")[0] == 200

    status, body = ctl.http("/v1/verify", yaml.safe_dump(good).encode())
    assert status == 200, body
    bad = seal("m", namespace, key=keypair(3).key)
    status, body = ctl.http("/v1/verify", yaml.safe_dump(bad).encode())
    assert status == 409 and b"DecryptFailed" in body
    assert VALUE.encode() not in body

    status, body = ctl.http("/v1/rotate", yaml.safe_dump(good).encode())
    assert status == 200, body
    rotated = yaml.safe_load(body)
    assert VALUE.encode() not in body
    assert rotated["spec"]["encryptedData"]["password"] != good["spec"]["encryptedData"][
        "password"]
    status, _ = ctl.http("/v1/verify", body)
    assert status == 200


# --- HA ---------------------------------------------------------------------------------------


def test_ha_standby_takes_over_within_30s(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    first = start_controller()
    second = start_controller(ready="standby")
    create(kube, seal("ha-1", namespace))
    wait_condition(kube, namespace, "ha-1", "True")
    # the standby follows the keys: it serves the certificate and verifies too
    assert second.http("/v1/cert.pem") == first.http("/v1/cert.pem")
    assert second.http("/v1/verify", yaml.safe_dump(seal("ha-1", namespace)).encode())[0] == 200
    first.kill()  # a crash: the Lease is not released
    t0 = time.monotonic()
    second.wait_ready(40)
    took = time.monotonic() - t0
    assert took < 30, f"takeover took {took:.1f}s"
    create(kube, seal("ha-2", namespace))
    wait_condition(kube, namespace, "ha-2", "True")


def test_leader_stopped_by_sigterm_hands_over_at_once(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    """A rollout: SIGTERM to the leader releases the Lease on the way out, so the standby
    takes over within its retry period (2 s), not after the Lease expires (15 s)."""
    first = start_controller()
    second = start_controller(ready="standby")
    assert first.stop(timeout=20) == 0
    t0 = time.monotonic()
    second.wait_ready(20)
    took = time.monotonic() - t0
    assert took < 5, f"takeover took {took:.1f}s"
    assert "released leadership lease" in first.log()
    create(kube, seal("handed-over", namespace))
    wait_condition(kube, namespace, "handed-over", "True")


def test_standby_stops_at_once_on_sigterm(
    kube: Kube, namespace: str, ctl_ns: str, start_controller: Start
) -> None:
    """A standby waiting for the Lease ends on SIGTERM with exit 0 (a rollout or scale-down
    of the Deployment). Before, no handler was installed while it waited: it died of the
    signal here, and as PID 1 in its container -- where a signal without a handler is
    ignored -- it lingered until the kubelet's SIGKILL 30 s later. The leader keeps the
    Lease."""
    first = start_controller()
    second = start_controller(ready="standby")
    holder = (kube.get_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME) or {})["spec"][
        "holderIdentity"]
    started = time.monotonic()
    code = second.stop(timeout=20)
    took = time.monotonic() - started
    assert code == 0 and took < 5, f"exit {code} after {took:.1f}s:\n{second.log()[-2000:]}"
    assert "stopping (SIGTERM)" in second.log() and "Traceback" not in second.log()
    assert (kube.get_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME) or {})["spec"][
        "holderIdentity"] == holder
    assert first.ready_state() == "ready"


def test_leader_that_loses_its_lease_exits_nonzero(
    kube: Kube, namespace: str, ctl_ns: str, start_controller: Start
) -> None:
    ctl = start_controller()
    lease = kube.get_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME)
    assert lease is not None
    assert lease["spec"]["holderIdentity"]
    lease["spec"]["holderIdentity"] = "someone-else"
    lease["spec"]["renewTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    kube.replace_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME, lease)
    assert ctl.popen is not None
    assert ctl.popen.wait(30) == 1
    assert "lost leadership" in ctl.log()
    # give the Lease back so the next test's controller does not wait for it to expire
    lease = kube.get_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME)
    assert lease is not None
    lease["spec"]["holderIdentity"] = None
    kube.replace_lease(ctl_ns, api.DEFAULT_CONTROLLER_NAME, lease)


# --- never leak -------------------------------------------------------------------------------


def test_no_plaintext_in_events_status_or_annotations(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    start_controller(("--log-level", "DEBUG"))
    create(kube, seal("leak-ok", namespace))
    bad = seal("leak-bad", namespace)
    bad["spec"]["template"]["data"] = {"x": "{{ password | int }}{{ nope }}"}
    create(kube, bad)
    wait_condition(kube, namespace, "leak-ok", "True")
    wait_condition(kube, namespace, "leak-bad", "False", "InvalidTemplate")
    blobs = [yaml.safe_dump(e) for e in kube.list_events(namespace)]
    for name in ("leak-ok", "leak-bad"):
        blobs.append(yaml.safe_dump(get_sealed(kube, namespace, name)))
    secret = kube.get_secret(namespace, "leak-ok") or {}
    blobs.append(yaml.safe_dump(secret.get("metadata")))
    for blob in blobs:
        for value in SECRET_VALUES:
            assert value not in blob
            assert base64.b64encode(value.encode()).decode() not in blob


# --- Bitnami compatibility and the cluster CLI commands ---------------------------------------

BITNAMI_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "sealedsecrets.bitnami.com"},
    "spec": {
        "group": "bitnami.com",
        "scope": "Namespaced",
        "names": {"kind": "SealedSecret", "plural": "sealedsecrets",
                  "singular": "sealedsecret", "listKind": "SealedSecretList"},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


def test_bitnami_compat_kubeseal_objects_and_bitnami_keys(
    kube: Kube, namespace: str, ctl_ns: str, kubeseal_bin: Path, tmp_path: Path,
    start_controller: Start, sandbox: Any
) -> None:
    kube.apply(BITNAMI_CRD)
    wait_for(lambda: kube.crd_established("sealedsecrets.bitnami.com"), what="Bitnami CRD")
    # a key Secret as Bitnami's controller labels it (not ours)
    bitnami_key = keypair(4)
    body = secret_body_for_key(bitnami_key.key, namespace=ctl_ns, name=f"bitnami-{namespace}")
    body["metadata"]["labels"] = {api.BITNAMI_LABEL_SEALING_KEY: "active"}
    kube.create_secret(ctl_ns, body)
    start_controller(("--bitnami-compat", "--import-bitnami-keys"))
    # sealed by Bitnami's own kubeseal to the Bitnami key: no fingerprint annotation
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(plain_secret("from-kubeseal", namespace)))
    out = subprocess.run(
        [str(kubeseal_bin), "--cert", str(bitnami_key.cert_path), "--format", "yaml",
         "-f", str(tmp_path / "s.yaml")],
        capture_output=True, text=True, timeout=60,
        env={"KUBECONFIG": str(sandbox.kubeconfig), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(out.stdout)
    assert doc["apiVersion"] == "bitnami.com/v1alpha1"
    created = kube.create_custom("bitnami.com", "v1alpha1", P, namespace, doc)
    secret = wait_for(lambda: kube.get_secret(namespace, "from-kubeseal"), what="Secret")
    assert values(secret) == {"password": VALUE.encode(), "user": b"admin"}
    ref = secret["metadata"]["ownerReferences"][0]
    assert ref["apiVersion"] == "bitnami.com/v1alpha1"
    assert ref["uid"] == created["metadata"]["uid"]
    obj = wait_for(lambda: (kube.get_custom("bitnami.com", "v1alpha1", P, namespace,
                                            "from-kubeseal") or {}).get("status"),
                   what="Bitnami object status")
    assert obj["conditions"][0]["status"] == "True"


def test_cli_keys_import_validate_and_reencrypt_cluster(
    kube: Kube, namespace: str, ctl_ns: str, sandbox: Any, tmp_path: Path,
    start_controller: Start
) -> None:
    ctl = start_controller()
    url = f"http://127.0.0.1:{ctl.port}"
    k5 = keypair(5)
    doc = seal("cli", namespace, key=k5.key)
    (tmp_path / "cli.yaml").write_text(yaml.safe_dump(doc))

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "secretsync", *argv], capture_output=True, text=True,
                              timeout=60)

    bad = cli("validate", str(tmp_path / "cli.yaml"), "--controller-url", url)
    assert bad.returncode == 1
    assert "DecryptFailed" in bad.stdout

    imported = cli("keys", "import", str(k5.key_path), "--kubeconfig", str(sandbox.kubeconfig),
                   "--controller-namespace", ctl_ns)
    assert imported.returncode == 0, imported.stderr
    again = cli("keys", "import", str(k5.key_path), "--kubeconfig", str(sandbox.kubeconfig),
                "--controller-namespace", ctl_ns)
    assert again.returncode == 0 and "already present" in again.stdout

    def valid() -> bool:
        return cli("validate", str(tmp_path / "cli.yaml"), "--controller-url", url
                   ).returncode == 0

    wait_for(valid, timeout=30, what="imported key in use")

    # reencrypt --cluster: the controller re-seals to its newest key; the file changes
    before = (tmp_path / "cli.yaml").read_text()
    out = cli("reencrypt", "--cluster", "--controller-url", url, str(tmp_path / "cli.yaml"))
    assert out.returncode == 0, out.stderr
    after = yaml.safe_load((tmp_path / "cli.yaml").read_text())
    assert (tmp_path / "cli.yaml").read_text() != before
    assert VALUE not in (tmp_path / "cli.yaml").read_text()
    newest = kube.get_configmap(ctl_ns, "secretsync-controller-cert")
    assert newest is not None
    assert after["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == newest["metadata"][
        "annotations"][api.ANN_KEY_FINGERPRINT]
    assert cli("validate", str(tmp_path / "cli.yaml"), "--controller-url", url).returncode == 0
    create(kube, after)
    wait_condition(kube, namespace, "cli", "True")


# --- deploy/ ----------------------------------------------------------------------------------


def test_deploy_server_side_dry_run(kube: Kube) -> None:
    """``kubectl apply -k deploy/ --dry-run=server`` equivalent, plus the Deployment's pod
    template against the restricted Pod Security admission of its namespace."""
    docs = render_kustomization()
    ns = next(d for d in docs if d["kind"] == "Namespace")
    kube.apply(ns)  # namespaced objects need their namespace to exist, as with kubectl
    applied = apply_docs(kube, docs, dry_run=True)
    assert {"Deployment/secretsync-controller", "Service/secretsync-controller",
            "ClusterRole/secretsync-controller"} <= set(applied)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    # the disruption budget covers exactly the Deployment's pods and never lets both go
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert "PodDisruptionBudget/secretsync-controller" in applied
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] < dep["spec"]["replicas"]
    # A pod is admitted only if its ServiceAccount exists (a real apply creates it first);
    # don't depend on another test having created it.
    kube.apply(next(d for d in docs if d["kind"] == "ServiceAccount"))
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "psa-check", "namespace": ns["metadata"]["name"]},
           "spec": dep["spec"]["template"]["spec"]}
    kube.apply(pod, dry_run=True, plural="pods")


def test_kubectl_apply_k_deploy_dry_run_server(kube: Kube, sandbox: Any) -> None:
    """The literal acceptance check: ``kubectl apply -k deploy/ --dry-run=server``."""
    from sandbox import builder
    from sandbox.demo import DEPLOY, ensure_kubectl

    try:
        kubectl = ensure_kubectl()
    except builder.BuildError as exc:
        pytest.fail(f"kubectl could not be built: {exc}", pytrace=False)
    ns = next(d for d in render_kustomization() if d["kind"] == "Namespace")
    kube.apply(ns)  # as on a real cluster, namespaced objects need their namespace to exist
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", str(sandbox.kubeconfig), "apply", "-k", str(DEPLOY),
         "--dry-run=server"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for expected in ("deployment.apps/secretsync-controller", "service/secretsync-controller",
                     "clusterrole.rbac.authorization.k8s.io/secretsync-controller",
                     "role.rbac.authorization.k8s.io/secretsync-cert-reader",
                     "poddisruptionbudget.policy/secretsync-controller"):
        assert expected in out.stdout
    assert "(server dry run)" in out.stdout

