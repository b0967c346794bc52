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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sandbox.demo import ControllerProcess
from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import wait_for
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
