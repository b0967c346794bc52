"""What ``deploy/Dockerfile`` does, done without a container engine.

The image cannot be built here (no container engine, no registry for its base image), but its
steps can be replayed: the build stage's COPY lines into a clean source directory, its
``pip install`` (non-editable, with the extras it names) into a clean virtualenv that stands for
``/usr/local``, then the ENTRYPOINT with the Deployment's args and the image's ENV, started from
outside the repository. That catches what the editable development install hides: a subpackage
or data file missing from the wheel, a file the build needs but the Dockerfile does not copy, a
runtime import satisfied only by the test extras, a console script that does not resolve.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.demo import ControllerProcess
from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import wait_for
from tests.integration._external import MARK, sandbox_world
from tests.integration.test_sealed_controller import VALUE, create, seal

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Dockerfile:
    """The parts of deploy/Dockerfile this test replays."""

    copies: list[tuple[list[str], str]] = field(default_factory=list)  # build stage
    install: list[str] = field(default_factory=list)  # the build stage's RUN, as argv
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    final_copies_install: bool = False


def parse_dockerfile(text: str) -> Dockerfile:
    """A small reader for the instructions our Dockerfile uses (no line continuations)."""
    df, stage = Dockerfile(), -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        elif word == "COPY" and stage == 0:
            *sources, dest = shlex.split(rest)
            df.copies.append((sources, dest))
        elif word == "COPY" and "--from=build" in rest:
            df.final_copies_install = shlex.split(rest)[1:] == ["/install", "/usr/local"]
        elif word == "RUN" and stage == 0:
            df.install = shlex.split(rest)
        elif word == "ENTRYPOINT":
            df.entrypoint = json.loads(rest)
        elif word == "CMD":
            df.cmd = json.loads(rest)
        elif word == "ENV":
            df.env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word == "USER":
            df.user = rest
    return df


@dataclass
class Image:
    root: Path  # the virtualenv standing for /usr/local
    dockerfile: Dockerfile

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        """The image's environment: its ENV, nothing from the test run's Python set-up."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("PYTHON", "VIRTUAL_ENV", "KUBECONFIG"))}
        return {**keep, **self.dockerfile.env, "PATH": f"{self.bin}:/usr/bin:/bin"}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    df = parse_dockerfile((REPO / "deploy" / "Dockerfile").read_text())
    assert df.install[:2] == ["pip", "install"], df.install
    assert df.final_copies_install, "the final stage must copy the build stage's /install"
    work = tmp_path_factory.mktemp("image")
    src = work / "src"  # the build stage's WORKDIR, holding only what its COPY lines bring
    src.mkdir()
    for sources, dest in df.copies:
        for s in sources:
            target = src / dest / Path(s).name if dest.endswith("/") else src / dest
            if (REPO / s).is_dir():
                shutil.copytree(REPO / s, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / s, target)
    root = work / "usr-local"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    # the RUN line as written, except: the venv is the prefix (the image's /usr/local), and
    # pip's cache may be used (the wheels are the same; the image drops them to stay small)
    args = [a for a in df.install[2:] if not a.startswith(("--prefix", "--no-cache-dir"))]
    done = subprocess.run([str(root / "bin" / "pip"), "install", "--quiet", *args], cwd=src,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the Dockerfile's pip install failed:\n{done.stderr[-3000:]}"
    return Image(root, df)


def test_dockerfile_runs_non_root_with_the_controller_as_default() -> None:
    df = parse_dockerfile((REPO / "deploy" / "Dockerfile").read_text())
    uid, _, gid = df.user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), df.user  # runAsNonRoot needs a UID
    assert df.entrypoint == ["secretsync"] and df.cmd == ["controller"]
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "controller"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert df.env.get("PYTHONDONTWRITEBYTECODE") == "1"  # nothing to write on a read-only root


def test_installed_package_has_every_module(image: Image) -> None:
    listing = subprocess.run(
        [str(image.bin / "python"), "-c",
         "import pathlib, secretsync; p = pathlib.Path(secretsync.__file__).parent; "
         "print('\\n'.join(str(f.relative_to(p)) for f in p.rglob('*') "
         "if f.suffix in ('.py', '.typed')))"],
        cwd=image.root, env=image.env(), capture_output=True, text=True, check=True)
    installed = set(listing.stdout.split())
    source = {str(f.relative_to(REPO / "secretsync")) for f in (REPO / "secretsync").rglob("*")
              if f.suffix in (".py", ".typed")}
    assert source - installed == set(), "missing from the installed package"
    assert "py.typed" in installed


def test_entrypoint_starts_outside_the_repository(image: Image, tmp_path: Path) -> None:
    entry = image.bin / image.dockerfile.entrypoint[0]
    version = subprocess.run([str(entry), "--version"], cwd=tmp_path, env=image.env(),
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert "secretsync" in version.stdout + version.stderr
    # every backend the controller can load comes with the image's extras
    probe = subprocess.run(
        [str(image.bin / "python"), "-c",
         "from importlib.metadata import entry_points; "
         "[e.load() for e in entry_points(group='secretsync.backends')]; "
         "import secretsync.controller.main, kopf, jinja2, prometheus_client"],
        cwd=tmp_path, env=image.env(), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]


def test_installed_controller_unseals_with_the_deployment_args(
    image: Image, kube: Kube, namespace: str, ctl_ns: str,
    sa_kubeconfig: Path, tmp_path: Path,
) -> None:
    """ENTRYPOINT + the Deployment's args (``$(POD_NAMESPACE)`` filled in), as the
    ServiceAccount, from a directory outside the repository with the image's ENV; only the
    connection (a kubeconfig instead of the in-cluster token), the watched namespace and the
    port are added."""
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    args = [a.replace("$(POD_NAMESPACE)", ctl_ns)
            for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]]
    ctl = ControllerProcess(sa_kubeconfig, controller_namespace=ctl_ns,
                            log_path=tmp_path / "controller.log")
    ctl.argv = [str(image.bin / image.dockerfile.entrypoint[0]), *args, "--kubeconfig",
                str(sa_kubeconfig), "--namespace", namespace, "--http-host", "127.0.0.1",
                "--http-port", str(ctl.port), "--controller-name", f"img-{uuid.uuid4().hex[:6]}"]
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    ctl.start(cwd=run_dir, env=image.env())
    try:
        ctl.wait_ready(60)  # "ready", not "standby": the Lease won
        create(kube, seal("from-image", namespace))
        secret = wait_for(lambda: kube.get_secret(namespace, "from-image"), 30,
                          "the Secret unsealed by the installed controller")
        assert base64.b64decode(secret["data"]["password"]).decode() == VALUE
        refs = secret["metadata"]["ownerReferences"]
        assert refs[0]["kind"] == api.KIND_SEALED and refs[0]["controller"] is True
    finally:
        started = time.monotonic()
        code = ctl.stop(timeout=20)
    log_text = ctl.log()
    assert code == 0 and time.monotonic() - started < 5, log_text[-3000:]
    assert VALUE not in log_text
    lines = [ln for ln in log_text.splitlines() if ln.strip()]
    assert lines and all(json.loads(ln) for ln in lines), "--log-format=json: one object a line"
    assert not list(run_dir.iterdir()), "the controller wrote into its working directory"


# Run as the Deployment's pod would: PID 1 of its own PID namespace (a signal without a
# handler is ignored there, as in a container), in a private mount namespace where the image's
# /usr/local (the replayed install) and the interpreter it links to are shown read-only, the
# whole root filesystem is remounted read-only (readOnlyRootFilesystem), /tmp is a writable
# directory of the test's (the emptyDir), the ServiceAccount's token, CA and namespace lie
# where the kubelet projects them, and the process drops to the Dockerfile's USER with no
# capabilities and no_new_privs (the restricted Pod Security profile). Nothing on the host's
# filesystem is touched: every mount lives and dies with the namespace.
POD_SCRIPT = r"""
set -eu
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount /run/image-python
cp "$SA_DIR"/token "$SA_DIR"/ca.crt "$SA_DIR"/namespace /run/secrets/kubernetes.io/serviceaccount/
mount --bind "$PY_HOME" /run/image-python
mount --bind "$IMAGE_ROOT" /usr/local
mount -t tmpfs -o mode=0755 tmpfs /root
mkdir -p "$PY_HOME"
mount --move /run/image-python "$PY_HOME"
mount --bind "$EMPTY_DIR" /tmp
for ro in / /usr/local "$PY_HOME" /run /root; do mount -o remount,bind,ro "$ro"; done
exec setpriv --reuid="$POD_UID" --regid="$POD_GID" --clear-groups --inh-caps=-all \
    --bounding-set=-all --no-new-privs -- /usr/local/bin/python /usr/local/bin/"$@"
"""


@dataclass
class Pod:
    """The installed controller started as the Deployment's pod (``POD_SCRIPT``)."""

    ctl: ControllerProcess
    empty_dir: Path  # its /tmp
    uid: str
    gid: str

    def pid1(self) -> int:
        """The controller: PID 1 of its namespace, the child of ``unshare --fork``."""
        assert self.ctl.popen is not None
        pid = self.ctl.popen.pid
        return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])

    def check_identity(self) -> None:
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.pid1()}/status").read_text().splitlines())
        assert status["Uid"].split()[:2] == [self.uid, self.uid]
        assert status["Gid"].split()[0] == self.gid
        assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1"
        assert status["NSpid"].split()[-1] == "1", "not PID 1 of its namespace"


def start_pod(image: Image, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str,
              work: Path, name: str) -> Pod:
    """The Deployment's args (``$(POD_NAMESPACE)`` filled in), plus the watched namespace,
    a free HTTP port and ``--controller-name``; in-cluster configuration, no kubeconfig. (The
    script is started by its interpreter, as the kernel does for the ENTRYPOINT: its ``#!``
    names where the replay installed it, not /usr/local.)"""
    from tests.integration.test_sealed_controller import SA

    uid, _, gid = image.dockerfile.user.partition(":")
    sa_dir, empty_dir = work / "sa", work / "emptydir"
    sa_dir.mkdir(parents=True)
    empty_dir.mkdir()
    empty_dir.chmod(0o1777)
    (sa_dir / "token").write_text(kube.request_token(ctl_ns, SA))
    shutil.copy(sandbox.ca_file, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(ctl_ns)
    for f in sa_dir.iterdir():
        f.chmod(0o644)
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    args = [a.replace("$(POD_NAMESPACE)", ctl_ns)
            for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]]
    host, _, port = sandbox.server.removeprefix("https://").rpartition(":")
    ctl = ControllerProcess(work / "unused", controller_namespace=ctl_ns,
                            log_path=work / "controller.log")
    ctl.argv = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--",
                "sh", "-c", POD_SCRIPT, "pod", image.dockerfile.entrypoint[0], *args,
                "--namespace", namespace,  # the default --http-host: every address
                "--http-port", str(ctl.port), "--controller-name", name]
    env = {**{k: v for k, v in image.env().items() if k in ("LANG", "LC_ALL", "TZ")},
           **image.dockerfile.env, "PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/", "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
           "SA_DIR": str(sa_dir), "EMPTY_DIR": str(empty_dir), "IMAGE_ROOT": str(image.root),
           "PY_HOME": sys.base_prefix, "POD_UID": uid, "POD_GID": gid}
    ctl.start(cwd=Path("/"), env=env)
    return Pod(ctl, empty_dir, uid, gid)


def stop_pod(pod: Pod) -> str:
    """SIGTERM, as the kubelet sends it; must exit 0 within 5 s (the grace period is 30 s);
    returns the log, checked for tracebacks."""
    started = time.monotonic()
    code = pod.ctl.stop(timeout=20)
    took = time.monotonic() - started
    log_text = pod.ctl.log()
    assert code == 0 and took < 5, f"exit {code} after {took:.1f}s:\n{log_text[-3000:]}"
    assert "Traceback" not in log_text, log_text[-3000:]
    assert not list(pod.empty_dir.iterdir()), "the controller wrote into /tmp"
    return log_text


def test_installed_controller_runs_as_the_restricted_pod(
    image: Image, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str, vault_mount: str,
    tmp_path: Path,
) -> None:
    """As the pod runs it (``POD_SCRIPT``): the controller must get ready, unseal, sync an
    ExternalSecret from Vault, serve /metrics and stop on SIGTERM as PID 1 -- and write
    nothing to /tmp."""
    pod = start_pod(image, kube, sandbox, namespace, ctl_ns, tmp_path,
                    f"pod-{uuid.uuid4().hex[:6]}")
    try:
        pod.ctl.wait_ready(60)
        pod.check_identity()
        create(kube, seal("from-pod", namespace))
        secret = wait_for(lambda: kube.get_secret(namespace, "from-pod"), 30,
                          "the Secret unsealed by the controller running as the pod")
        assert base64.b64decode(secret["data"]["password"]).decode() == VALUE
        world = sandbox_world(sandbox, kube, namespace, vault_mount, tmp_path)
        world.put("pod/db", {"password": f"pod-{MARK}"})
        world.apply_store()
        world.apply_es("from-vault", {"data": [
            {"secretKey": "password", "remoteRef": {"key": "pod/db", "property": "password"}}]})
        world.wait_data("from-vault", {"password": f"pod-{MARK}".encode()})
        status_code, body = pod.ctl.http("/metrics")
        assert status_code == 200 and b"secretsync_unseal_total" in body
        # as the kubelet probes a pod on an IPv6 address (an IPv6-only cluster)
        with urllib.request.urlopen(f"http://[::1]:{pod.ctl.port}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        log_text = stop_pod(pod)
    assert VALUE not in log_text and MARK not in log_text


def test_installed_standby_pod_stops_on_sigterm_as_pid_1(
    image: Image, kube: Kube, sandbox: Any, namespace: str, ctl_ns: str, tmp_path: Path,
    sa_kubeconfig: Path,
) -> None:
    """A second replica waits for the Lease as a standby; SIGTERM to it as PID 1 (a rollout)
    must end it at once with exit 0, not 30 s later by the kubelet's SIGKILL."""
    name = f"pod-{uuid.uuid4().hex[:6]}"
    leader = ControllerProcess(sa_kubeconfig, controller_namespace=ctl_ns, namespace=namespace,
                               extra=("--controller-name", name),
                               log_path=tmp_path / "leader.log")
    leader.start()
    try:
        leader.wait_ready(60)
        pod = start_pod(image, kube, sandbox, namespace, ctl_ns, tmp_path / "standby", name)
        try:
            pod.ctl.wait_ready(60, state="standby")
            pod.check_identity()
        finally:
            log_text = stop_pod(pod)
        assert "stopping (SIGTERM)" in log_text
        assert leader.ready_state() == "ready"
    finally:
        leader.stop()
