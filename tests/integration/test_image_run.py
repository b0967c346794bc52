"""The controller image `make image` built, run with runc the way its Deployment runs it.

The image is the one built from the current sources (``sandbox.image.find_built``); CI builds
it before the tests, so a missing image or a missing runtime FAILS here. Each container runs
from the unpacked image with a read-only root filesystem, as the image's user (65532) with no
capabilities and ``no_new_privs``, ``/tmp`` a directory of the test's (the emptyDir), the
ServiceAccount's token, CA and namespace where the kubelet projects them (in-cluster
configuration, a TokenRequest token of the deploy/ ServiceAccount with its RBAC applied), the
Deployment's args, and the host's network (the sandbox listens on 127.0.0.1). The controller
is PID 1 of its PID namespace, so SIGTERM reaches it as the kubelet sends it. The Dockerfile's
metadata must match the image's config: both paths build the same thing.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import image, rootfs
from sandbox.demo import ControllerProcess
from secretsync.kube import Kube
from tests.integration._controller import wait_for
from tests.integration._external import MARK, sandbox_world
from tests.integration.test_sealed_controller import SA, VALUE, create, seal

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = Path("/") / rootfs.SITE


@pytest.fixture(scope="module")
def built() -> image.Built:
    """The image of the current sources: CI builds it first (`make image`); after an edit the
    fixture builds it, as the sandbox fixture starts the sandbox. Never skipped: a build that
    fails, or a missing runtime, fails the tests."""
    found = image.find_built()
    if found is None:
        try:
            image.ensure_tools()
            found = image.build()
        except (rootfs.RootfsError, OSError, subprocess.CalledProcessError) as exc:
            failure = f"no image built from these sources, and `make image` fails: {exc}"
            pytest.fail(failure, pytrace=False)
    for tool in ("umoci", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make image` installs it", pytrace=False)
    return found


@pytest.fixture(scope="module")
def unpacked(built: image.Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``umoci unpack``: ``rootfs/`` and the runtime config umoci derives from the image's."""
    bundle = tmp_path_factory.mktemp("image") / "bundle"
    subprocess.run(["umoci", "unpack", "--image", built.ref, str(bundle)], check=True,
                   capture_output=True)
    return bundle


@dataclass
class Container:
    """One runc container of the image; ``proc`` is the foreground ``runc run``."""

    proc: ControllerProcess
    state: Path
    name: str
    tmp: Path  # its /tmp

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runc", "--root", str(self.state), *args], capture_output=True,
                              text=True, check=False)

    def pid(self) -> int:
        return int(json.loads(self.runc("state", self.name).stdout)["pid"])

    def check_identity(self) -> None:
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.pid()}/status").read_text().splitlines())
        assert status["Uid"].split()[:2] == [str(rootfs.UID)] * 2
        assert status["Gid"].split()[0] == str(rootfs.GID)
        assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1"
        assert status["NSpid"].split()[-1] == "1", "not PID 1 of its namespace"

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM to the container's process (runc passes it on), as the kubelet stops it."""
        popen = self.proc.popen
        assert popen is not None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.runc("kill", self.name, "KILL")
                popen.wait(10)
        self.runc("delete", "--force", self.name)
        return popen.returncode


def start(unpacked: Path, work: Path, args: list[str] | None = None, *,
          env: dict[str, str] | None = None, service_account: Path | None = None,
          port: int | None = None) -> Container:
    """The image's process (or ``args``) in a container of the restricted pod's shape."""
    work.mkdir(parents=True, exist_ok=True)
    spec = json.loads((unpacked / "config.json").read_text())
    spec["root"] = {"path": str(unpacked / "rootfs"), "readonly": True}
    process = spec["process"]
    process.update(terminal=False, noNewPrivileges=True,
                   rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
    process["capabilities"] = {kind: [] for kind in process.get("capabilities", {})}
    process["args"] = args or process["args"]
    process["env"] += [f"{k}={v}" for k, v in (env or {}).items()]
    # hostNetwork: the sandbox's servers listen on the host's loopback
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                   if ns["type"] != "network"]
    tmp = work / "emptydir"
    tmp.mkdir()
    tmp.chmod(0o1777)
    spec["mounts"] += [
        {"destination": "/tmp", "type": "bind", "source": str(tmp), "options": ["rbind", "rw"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=755"]},
    ]
    if service_account is not None:
        spec["mounts"].append({"destination": "/run/secrets/kubernetes.io/serviceaccount",
                               "type": "bind", "source": str(service_account),
                               "options": ["rbind", "ro"]})
    bundle = work / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"secretsync-{uuid.uuid4().hex[:10]}"
    ctl = ControllerProcess(work / "unused", controller_namespace="-",
                            log_path=work / "container.log")
    ctl.port = port or ctl.port
    ctl.argv = ["runc", "--root", str(work / "state"), "run", "--bundle", str(bundle), name]
    ctl.start(cwd=work)
    return Container(ctl, work / "state", name, tmp)


def run_once(unpacked: Path, work: Path, args: list[str]) -> str:
    """Run ``args`` in a container to the end; its output (exit 0 asserted)."""
    box = start(unpacked, work, args)
    assert box.proc.popen is not None
    try:
        code = box.proc.popen.wait(120)
    finally:
        box.stop()
    assert code == 0, box.proc.log()[-3000:]
    return box.proc.log()


def in_cluster(kube: Kube, sandbox: Any, ctl_ns: str, work: Path) -> tuple[Path, dict[str, str]]:
    """The projected ServiceAccount files and the Service variables the kubelet provides."""
    sa = work / "serviceaccount"
    sa.mkdir(parents=True)
    (sa / "token").write_text(kube.request_token(ctl_ns, SA))
    shutil.copy(sandbox.ca_file, sa / "ca.crt")
    (sa / "namespace").write_text(ctl_ns)
    for f in [sa, *sa.iterdir()]:
        f.chmod(0o755 if f.is_dir() else 0o644)
    host, _, port = sandbox.server.removeprefix("https://").rpartition(":")
    return sa, {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


def start_controller(unpacked: Path, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str,
                     work: Path, name: str) -> Container:
    """ENTRYPOINT + the Deployment's args (``$(POD_NAMESPACE)`` filled in), plus the watched
    namespace, a free port and ``--controller-name``."""
    sa, env = in_cluster(kube, sandbox, ctl_ns, work)
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("$(POD_NAMESPACE)", ctl_ns) for a in container["args"]]
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
               POD_NAMESPACE=ctl_ns)
    port = ControllerProcess(work, controller_namespace="-").port
    argv = [*image.ENTRYPOINT, *args, "--namespace", namespace, "--http-port", str(port),
            "--controller-name", name]
    return start(unpacked, work, argv, env=env, service_account=sa, port=port)


def stop_controller(box: Container) -> str:
    """Exit 0 within 5 s of SIGTERM (the grace period is 30 s), no traceback, nothing written
    to /tmp; returns the log."""
    code = box.stop()
    log_text = box.proc.log()
    assert code == 0, f"exit {code}:\n{log_text[-3000:]}"
    assert "Traceback" not in log_text, log_text[-3000:]
    assert not list(box.tmp.iterdir()), "the controller wrote into /tmp"
    return log_text


# --- the image itself ---------------------------------------------------------------------


def dockerfile_final_stage() -> dict[str, list[str]]:
    """Instruction -> its arguments, for the Dockerfile's last stage (one line each)."""
    stages: list[dict[str, list[str]]] = []
    for raw in (REPO / "deploy" / "Dockerfile").read_text().splitlines():
        word, _, rest = raw.strip().partition(" ")
        if word.upper() == "FROM":
            stages.append({"FROM": [rest]})
        elif word and not word.startswith("#") and stages:
            stages[-1].setdefault(word.upper(), []).append(rest)
    return stages[-1]


def test_dockerfile_builds_the_same_image(built: image.Built) -> None:
    final = dockerfile_final_stage()
    assert final["FROM"] == ["scratch"] and final["COPY"] == ["--from=build /rootfs /"]
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert "-m sandbox.rootfs /rootfs" in text
    config = image.config_of(Path(built.layout))["config"]
    env = dict(kv.split("=", 1) for line in final["ENV"] for kv in shlex.split(line))
    assert [f"{k}={v}" for k, v in env.items()] == config["Env"]
    assert final["USER"] == [config["User"]] == [image.USER]
    assert [json.loads(e) for e in final["ENTRYPOINT"]] == [config["Entrypoint"]]
    assert [json.loads(c) for c in final["CMD"]] == [config["Cmd"]]
    assert final["WORKDIR"] == [config["WorkingDir"]]
    assert {f"{p}/tcp" for p in final["EXPOSE"]} == set(config["ExposedPorts"])
    labels = dict(kv.split("=", 1) for line in final["LABEL"] for kv in shlex.split(line))
    assert labels == config["Labels"]
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" \
        == config["User"]
    assert pod["containers"][0]["args"][0] == config["Cmd"][0]


def test_image_holds_the_package_and_nothing_to_run_but_it(unpacked: Path) -> None:
    root = unpacked / "rootfs"
    installed = {str(p.relative_to(root / rootfs.SITE / "secretsync"))
                 for p in (root / rootfs.SITE / "secretsync").rglob("*")}
    source = {str(p.relative_to(REPO / "secretsync")) for p in (REPO / "secretsync").rglob("*")
              if p.suffix in (".py", ".typed")}
    assert source - installed == set(), "missing from the image"
    entries = [p for p in root.rglob("*") if not p.is_symlink()]
    programs = {p.name for p in entries if p.is_file() and os.access(p, os.X_OK)}
    assert not programs & {"sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "pip",
                           "pip3", "tar", "perl", "openssl"}
    assert not list((root / rootfs.SITE).glob("pip*")), "pip is in the image"
    assert not [p for p in entries if p.name == "__pycache__" or p.suffix == ".pyc"]
    assert not [p for p in (root / rootfs.SITE).rglob("tests") if p.is_dir()]
    assert sorted(p.name for p in (root / "usr/bin").iterdir()) == ["python3", "python3.11"]
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in entries}
    assert owners == {(0, 0), (rootfs.UID, rootfs.GID)}
    assert not [p for p in entries if p.stat().st_mode & 0o6000], "setuid/setgid files"


def test_version_and_backends_inside_the_image(unpacked: Path, tmp_path: Path) -> None:
    out = run_once(unpacked, tmp_path / "version", [*image.ENTRYPOINT, "--version"])
    assert out.strip() == f"secretsync {image.VERSION}"
    # every backend loads; botocore builds the clients the AWS backend uses from the service
    # data the image kept; TLS verification finds the CA bundle
    probe = (
        "from importlib.metadata import entry_points\n"
        "[e.load() for e in entry_points(group='secretsync.backends')]\n"
        "import secretsync.controller.main, kopf, kubernetes.client, ssl, botocore.session\n"
        "s = botocore.session.Session()\n"
        f"for n in {sorted(rootfs.AWS_SERVICES)!r}:\n"
        "    s.create_client(n, region_name='us-east-1', aws_access_key_id='a',\n"
        "                    aws_secret_access_key='b')\n"
        "print(len(ssl.create_default_context().get_ca_certs()))\n")
    out = run_once(unpacked, tmp_path / "probe", ["python3", "-c", probe])
    assert int(out.split()[-1]) > 100


# --- the controller inside it -------------------------------------------------------------


def test_controller_in_the_image_unseals_and_syncs(
    unpacked: Path, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str, vault_mount: str,
    tmp_path: Path,
) -> None:
    """As the pod runs it: ready, unseals a SealedSecret, syncs an ExternalSecret from Vault,
    serves /metrics and /healthz (also over IPv6), stops on SIGTERM as PID 1."""
    box = start_controller(unpacked, kube, sandbox, namespace, ctl_ns, tmp_path,
                           f"img-{uuid.uuid4().hex[:6]}")
    try:
        box.proc.wait_ready(60)
        box.check_identity()
        create(kube, seal("from-image", namespace))
        secret = wait_for(lambda: kube.get_secret(namespace, "from-image"), 30,
                          "the Secret unsealed by the controller in the image")
        assert base64.b64decode(secret["data"]["password"]).decode() == VALUE
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "SealedSecret"
        world = sandbox_world(sandbox, kube, namespace, vault_mount, tmp_path)
        world.put("image/db", {"password": f"image-{MARK}"})
        world.apply_store()
        world.apply_es("from-vault", {"data": [
            {"secretKey": "password", "remoteRef": {"key": "image/db", "property": "password"}}]})
        world.wait_data("from-vault", {"password": f"image-{MARK}".encode()})
        world.wait_ready("from-vault")
        status, body = box.proc.http("/metrics")
        assert status == 200 and b"secretsync_unseal_total" in body
        with urllib.request.urlopen(f"http://[::1]:{box.proc.port}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        log_text = stop_controller(box)
    assert VALUE not in log_text and MARK not in log_text
    lines = [ln for ln in log_text.splitlines() if ln.strip()]
    assert lines and all(json.loads(ln) for ln in lines), "--log-format=json: one object a line"


def test_standby_in_the_image_stops_on_sigterm_as_pid_1(
    unpacked: Path, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str,
    sa_kubeconfig: Path, tmp_path: Path,
) -> None:
    """A second replica waits for the Lease; SIGTERM (a rollout) ends it at once, exit 0."""
    name = f"img-{uuid.uuid4().hex[:6]}"
    leader = ControllerProcess(sa_kubeconfig, controller_namespace=ctl_ns, namespace=namespace,
                               extra=("--controller-name", name),
                               log_path=tmp_path / "leader.log").start()
    try:
        leader.wait_ready(60)
        box = start_controller(unpacked, kube, sandbox, namespace, ctl_ns, tmp_path / "standby",
                               name)
        try:
            box.proc.wait_ready(60, state="standby")
            box.check_identity()
        finally:
            log_text = stop_controller(box)
        assert "stopping (SIGTERM)" in log_text
        assert leader.ready_state() == "ready"
    finally:
        leader.stop()


def test_image_has_no_path_of_the_build_machine(unpacked: Path) -> None:
    """No file points back at where it was built (the checkout, a cache or temporary dir)."""
    root = unpacked / "rootfs"
    script = (root / "usr/local/bin/secretsync").read_text()
    assert script.startswith(f"#!/usr/bin/{rootfs.PYTHON}\n")
    needles = [str(REPO).encode(), str(image.CACHE).encode(), b"/tmp/secretsync-"]
    for p in (root / rootfs.SITE).rglob("*"):
        if p.is_file() and p.suffix in (".py", ".txt", ".json", ".pth"):
            data = p.read_bytes()
            assert not any(n in data for n in needles), p
