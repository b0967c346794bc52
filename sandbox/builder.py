"""Builds or fetches every sandbox binary once per machine, cached by version.

Go servers are built from tiny wrapper modules (some upstream go.mod files carry `replace`
lines, so `go install pkg@version` cannot build them).
Everything lands in `~/.cache/secretsync/bin/<name>-<version>/`, written to a temporary
directory first and renamed into place, so an interrupted build never leaves a half binary.
A file lock lets `make dev` and a pytest session ask for the same binary concurrently.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import paths

ETCD_VERSION = "v3.6.16"
KUBE_VERSION = "v1.34.4"
KUBESEAL_VERSION = "v0.36.6"
HELM_VERSION = "v4.3.2"
GOPHER_LUA_VERSION = "v1.1.2"  # the Lua VM of Argo CD v3.6.2
GOPHER_JSON_VERSION = "v0.0.0-20190114024228-97fed8db8427"  # layeh.com/gopher-json, as Argo CD pins


class BuildError(RuntimeError):
    """A binary could not be built or fetched; the message names the log to read."""


@contextmanager
def _locked(name: str) -> Iterator[None]:
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    with open(paths.CACHE / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=full_env
        ).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"`{' '.join(cmd[:3])} ...` failed (exit {rc}); {log} ends:\n{tail}")


def _build_log(name: str) -> Path:
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    logdir = paths.CACHE / "logs"
    logdir.mkdir(exist_ok=True)
    return logdir / f"build-{name}.log"


def _go_wrapper_build(
    key: str,
    get: list[str],
    binaries: dict[str, str],
    replaces: dict[str, str] | None = None,
    ldflags: str = "-s -w",
    sources: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Build `binaries` (name -> package path) in a wrapper module that `go get`s `get`;
    `sources` (file name -> text) are written into the wrapper module first (our own harnesses)."""
    dest = paths.BIN_CACHE / key
    wanted = {name: dest / name for name in binaries}
    if all(p.exists() for p in wanted.values()):
        return wanted
    with _locked(key):
        if all(p.exists() for p in wanted.values()):
            return wanted
        log = _build_log(key)
        log.write_text(f"build {key} started {time.ctime()}\n")
        src = paths.SRC_CACHE / key
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        gomod = "module secretsync.local/sandboxbuild\n\ngo 1.24\n"
        if replaces:
            gomod += "\nreplace (\n" + "".join(
                f"\t{mod} => {target}\n" for mod, target in sorted(replaces.items())
            ) + ")\n"
        (src / "go.mod").write_text(gomod)
        for fname, text in (sources or {}).items():
            (src / fname).write_text(text)
        env = {"GOFLAGS": "-trimpath -buildvcs=false", "CGO_ENABLED": "0"}
        _run(["go", "get", *get], src, log, env)
        paths.BIN_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=paths.BIN_CACHE))
        try:
            for name, pkg in binaries.items():
                argv = ["go", "build", "-ldflags", ldflags, "-o", str(tmp / name), pkg]
                _run(argv, src, log, env)
            tmp.chmod(0o755)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with open(log, "a") as out:
            out.write(f"build {key} done {time.ctime()}\n")
    return wanted


def ensure_etcd() -> Path:
    return _go_wrapper_build(
        f"etcd-{ETCD_VERSION}",
        [f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"],
        {"etcd": "go.etcd.io/etcd/server/v3"},
    )["etcd"]


def _kube_staging_replaces(version: str) -> dict[str, str]:
    """Map each `k8s.io/<staging>` module of k8s.io/kubernetes@version to its published tag."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise BuildError(f"go mod download k8s.io/kubernetes@{version}: {out.stdout}{out.stderr}")
    gomod = Path(json.loads(out.stdout)["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", gomod, re.MULTILINE)
    if not staging:
        raise BuildError(f"no staging replace lines in k8s.io/kubernetes@{version} go.mod")
    published = "v0." + version.removeprefix("v1.")
    return {mod: f"{mod} {published}" for mod in staging}


def ensure_kube() -> dict[str, Path]:
    """kube-apiserver and kube-controller-manager from k8s.io/kubernetes (heavy: many minutes)."""
    key = f"kubernetes-{KUBE_VERSION}"
    dest = paths.BIN_CACHE / key
    names = ("kube-apiserver", "kube-controller-manager")
    if all((dest / n).exists() for n in names):
        return {n: dest / n for n in names}
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {pkg}.gitVersion={KUBE_VERSION} -X {pkg}.gitMajor={major}"
        f" -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        f" -X {pkg}.buildDate=1970-01-01T00:00:00Z"
    )
    return _go_wrapper_build(
        key,
        [f"k8s.io/kubernetes/cmd/{n}@{KUBE_VERSION}" for n in names],
        {n: f"k8s.io/kubernetes/cmd/{n}" for n in names},
        replaces=_kube_staging_replaces(KUBE_VERSION),
        ldflags=ldflags,
    )


SEALED_SECRETS_MODULE = "github.com/bitnami-labs/sealed-secrets"


def ensure_kubeseal() -> Path:
    """The Bitnami `kubeseal` CLI, for cross-implementation tests and benchmarks."""
    mod = SEALED_SECRETS_MODULE
    return _go_wrapper_build(
        f"kubeseal-{KUBESEAL_VERSION}",
        [f"{mod}/cmd/kubeseal@{KUBESEAL_VERSION}"],
        {"kubeseal": f"{mod}/cmd/kubeseal"},
    )["kubeseal"]


def ensure_bitnami_controller() -> Path:
    """Bitnami's sealed-secrets controller, for the switch-over test and the side-by-side
    benchmark (same version as kubeseal)."""
    mod = SEALED_SECRETS_MODULE
    return _go_wrapper_build(
        f"sealed-secrets-controller-{KUBESEAL_VERSION}",
        [f"{mod}/cmd/controller@{KUBESEAL_VERSION}"],
        {"controller": f"{mod}/cmd/controller"},
        ldflags=f"-s -w -X main.VERSION={KUBESEAL_VERSION}",
    )["controller"]


def ensure_kubectl() -> Path:
    """kubectl at the sandbox's Kubernetes version, for `kubectl apply -k deploy/
    --dry-run=server`."""
    return _go_wrapper_build(
        f"kubectl-{KUBE_VERSION}",
        [f"k8s.io/kubernetes/cmd/kubectl@{KUBE_VERSION}"],
        {"kubectl": "k8s.io/kubernetes/cmd/kubectl"},
        replaces=_kube_staging_replaces(KUBE_VERSION),
    )["kubectl"]


def ensure_helm() -> Path:
    """The `helm` CLI (helm.sh/helm/v4), for the chart's lint/template/install tests."""
    return _go_wrapper_build(
        f"helm-{HELM_VERSION}",
        [f"helm.sh/helm/v4/cmd/helm@{HELM_VERSION}"],
        {"helm": "helm.sh/helm/v4/cmd/helm"},
        ldflags=f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
    )["helm"]


LUA_HARNESS_SRC = Path(__file__).resolve().parent / "lua_harness" / "main.go"


def ensure_lua_harness() -> Path:
    """`argocd-lua-health`: runs an Argo CD health.lua in Argo CD's own Lua VM, the way Argo CD
    does (sandbox/lua_harness/main.go); keyed by the VM version and a hash of the source."""
    source = LUA_HARNESS_SRC.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return _go_wrapper_build(
        f"argocd-lua-health-{GOPHER_LUA_VERSION}-{digest}",
        [f"github.com/yuin/gopher-lua@{GOPHER_LUA_VERSION}",
         f"layeh.com/gopher-json@{GOPHER_JSON_VERSION}"],
        {"argocd-lua-health": "."},
        sources={"main.go": source},
    )["argocd-lua-health"]


ESO_MODULE = "github.com/external-secrets/external-secrets"
ESO_VERSION = "v0.16.2"
# ESO's go.mod swaps sprig for its fork; a wrapper module must repeat the swap
ESO_REPLACES = {"github.com/Masterminds/sprig/v3": "github.com/external-secrets/sprig/v3 v3.3.0"}
GOTEMPLATE_HARNESS_SRC = Path(__file__).resolve().parent / "gotemplate_harness" / "main.go"


def ensure_gotemplate_harness() -> Path:
    """`eso-gotemplate`: renders Go templates with ESO's real template engine
    (`pkg/template/v2`, sandbox/gotemplate_harness/main.go), the reference for our Go-template
    engine; keyed by ESO's version and a hash of the source."""
    source = GOTEMPLATE_HARNESS_SRC.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return _go_wrapper_build(
        f"eso-gotemplate-{ESO_VERSION}-{digest}",
        [f"{ESO_MODULE}@{ESO_VERSION}"],
        {"eso-gotemplate": "."},
        replaces=ESO_REPLACES,
        sources={"main.go": source},
    )["eso-gotemplate"]


ARGOCD_MODULE = "github.com/argoproj/argo-cd/v3"
ARGOCD_VERSION = "v3.6.2"
ARGOCD_CRD_FILES = ("application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml")


def ensure_argocd_crds() -> Path:
    """Argo CD's CRDs (``manifests/crds/`` of its Go module) in
    ``~/.cache/secretsync/crds/argo-cd-<version>/``, so the API server can validate Argo CD
    manifests (examples/gitops). Nothing is built: the module wants a newer Go to *compile*,
    but ``go mod download`` fetches and verifies its zip with the local toolchain (~60 MB)."""
    dest = paths.CACHE / "crds" / f"argo-cd-{ARGOCD_VERSION}"
    if all((dest / n).exists() for n in ARGOCD_CRD_FILES):
        return dest
    key = f"argo-cd-crds-{ARGOCD_VERSION}"
    with _locked(key):
        if all((dest / n).exists() for n in ARGOCD_CRD_FILES):
            return dest
        log = _build_log(key)
        ref = f"{ARGOCD_MODULE}@{ARGOCD_VERSION}"
        with tempfile.TemporaryDirectory() as work:  # outside any module
            try:
                out = subprocess.run(
                    ["go", "mod", "download", "-json", ref], cwd=work, capture_output=True,
                    text=True, check=False, env={**os.environ, "GOTOOLCHAIN": "local"},
                )
            except OSError as exc:
                raise BuildError(f"go mod download {ref}: {exc}") from exc
        log.write_text(f"$ go mod download -json {ref}\n{out.stdout}{out.stderr}")
        try:
            info = json.loads(out.stdout or "{}")
        except ValueError:
            info = {}
        # with GOTOOLCHAIN=local the JSON carries "requires go >= ..." in Error (exit 1), yet
        # the zip is downloaded and checked against the checksum database first
        zip_path = Path(info.get("Zip") or "/nonexistent")
        if not info.get("Sum") or not zip_path.is_file():
            raise BuildError(f"go mod download {ref} gave no module zip; see {log}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for name in ARGOCD_CRD_FILES:
                    (tmp / name).write_bytes(zf.read(f"{ref}/manifests/crds/{name}"))
            tmp.chmod(0o755)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        except KeyError as exc:
            raise BuildError(f"{ref} has no manifests/crds/ file {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
