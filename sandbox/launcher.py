"""Starts, checks and stops the whole sandbox; the CLI and the pytest fixtures both use it.

`up()` is idempotent: under a file lock it reuses a sandbox whose every component is healthy,
otherwise stops whatever is left of an old one, builds/fetches the binaries (cached), starts
every component in the background and writes `.dev/state.json` (ports, paths) and `.dev/env`
(shell `export` lines). Independent components start at once so a warm start stays short;
only the control plane is sequential (etcd, then the API server, then the controller-manager).
"""

from __future__ import annotations

import fcntl
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import aws, azure, builder, etcd, gcp, kube, paths, proc, vault

STATE_FILE = paths.DEV / "state.json"
# present when `make dev` asked for the sandbox: pytest sessions then never stop it
PIN_FILE = paths.DEV / "pinned"

# name -> health probe, in start order
HEALTH: dict[str, Callable[[dict[str, Any]], bool]] = {
    "etcd": etcd.healthy,
    "kube-apiserver": kube.apiserver_healthy,
    "kube-controller-manager": kube.controller_manager_healthy,
    "openbao": vault.healthy,
    "moto": aws.healthy,
    "gcp-sm-emulator": gcp.healthy,
    "azure-kv-emulator": azure.healthy,
}
PORTS = ["etcd", "etcd_peer", "apiserver", "kcm", "vault", "aws", "gcp", "azure"]


@dataclass
class Sandbox:
    """What a client needs: the env variables, the admin kubeconfig, the API URL and CA."""

    cfg: dict[str, Any]
    started: bool = False  # True when this call of `up()` started it (False: reused)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = env_vars(self.cfg)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.cfg["kube"]["kubeconfig"])

    @property
    def server(self) -> str:
        return str(self.cfg["kube"]["server"])

    @property
    def ca_file(self) -> Path:
        return Path(self.cfg["kube"]["ca_file"])


def env_vars(cfg: dict[str, Any]) -> dict[str, str]:
    return {
        "KUBECONFIG": cfg["kube"]["kubeconfig"],
        "VAULT_ADDR": cfg["vault_addr"],
        "VAULT_TOKEN": vault.ROOT_TOKEN,
        "AWS_ENDPOINT_URL": cfg["aws_url"],
        "AWS_ACCESS_KEY_ID": aws.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": aws.SECRET_KEY,
        "AWS_DEFAULT_REGION": aws.REGION,
        "GCP_SECRET_MANAGER_GRPC": cfg["gcp_grpc"],
        "AZURE_KEYVAULT_URL": cfg["azure_url"],
    }


@contextmanager
def _lock() -> Iterator[None]:
    paths.DEV.mkdir(parents=True, exist_ok=True)
    with open(paths.DEV / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(msg: str) -> None:
    print(f"sandbox: {msg}", file=sys.stderr, flush=True)


def load() -> dict[str, Any] | None:
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def health(cfg: dict[str, Any]) -> dict[str, str]:
    """name -> "healthy" | "dead" | "unhealthy" for each component of a recorded sandbox."""
    procs = {p.name: p for p in proc.recorded()}
    out = {}
    for name, probe in HEALTH.items():
        p = procs.get(name)
        if p is None or not p.alive():
            out[name] = "dead"
            continue
        try:
            out[name] = "healthy" if probe(cfg) else "unhealthy"
        except Exception:
            out[name] = "unhealthy"
    return out


def running() -> Sandbox | None:
    """The recorded sandbox if every component is healthy, else None."""
    cfg = load()
    if cfg is None:
        return None
    try:
        if all(v == "healthy" for v in health(cfg).values()):
            return Sandbox(cfg)
    except KeyError:
        return None
    return None


def build_all() -> dict[str, float]:
    """Build or fetch every binary (no-ops when cached); name -> seconds."""
    took: dict[str, float] = {}
    steps: list[tuple[str, Callable[[], object]]] = [
        ("etcd", builder.ensure_etcd),
        ("kubernetes", builder.ensure_kube),
        ("kubeseal", builder.ensure_kubeseal),
        ("kubectl", builder.ensure_kubectl),
        ("sealed-secrets-controller", builder.ensure_bitnami_controller),
        ("helm", builder.ensure_helm),
        ("argocd-lua-health", builder.ensure_lua_harness),
        ("eso-gotemplate", builder.ensure_gotemplate_harness),
        ("argo-cd-crds", builder.ensure_argocd_crds),
    ]
    for name, fn in steps:
        t = time.monotonic()
        fn()
        took[name] = time.monotonic() - t
        if took[name] > 1:
            _say(f"built/fetched {name} in {took[name]:.0f}s")
    return took


def _wipe() -> None:
    stale = proc.recorded()
    if stale:
        _say(f"stopping leftovers of an old sandbox: {', '.join(p.name for p in stale)}")
        proc.stop(stale)
    for p in (paths.STATE, paths.RUN):
        shutil.rmtree(p, ignore_errors=True)
    for f in (STATE_FILE, paths.ENV_FILE, paths.DEV / "kubeconfig"):
        f.unlink(missing_ok=True)


def up() -> Sandbox:
    with _lock():
        sb = running()
        if sb is not None:
            _say("already up and healthy")
            return sb
        _wipe()
        build_all()
        t0 = time.monotonic()
        for attempt in (1, 2):
            cfg = _fresh_config()
            try:
                _start(cfg)
                break
            except proc.ComponentError as exc:
                proc.stop(proc.recorded())
                if attempt == 2:
                    raise
                # most often a free port taken by someone else meanwhile: once more, new ports
                _say(f"start failed, retrying once with new ports: {str(exc).splitlines()[0]}")
                _wipe()
            except BaseException:
                proc.stop(proc.recorded())
                raise
        STATE_FILE.write_text(json.dumps(cfg, indent=1))
        write_env(cfg)
        _say(f"up in {time.monotonic() - t0:.1f}s; `source {paths.ENV_FILE}`")
        return Sandbox(cfg, started=True)


def _fresh_config() -> dict[str, Any]:
    """Distinct free loopback ports and a new PKI/kubeconfigs under a clean `.dev/state`."""
    paths.ensure_dirs()
    cfg: dict[str, Any] = {"ports": {}}
    used: set[int] = set()
    for name in PORTS:
        port = proc.free_port()
        while port in used:
            port = proc.free_port()
        used.add(port)
        cfg["ports"][name] = port
    kube.prepare(cfg)
    return cfg


def _start(cfg: dict[str, Any]) -> None:
    started = {
        "etcd": etcd.start(cfg),
        "openbao": vault.start(cfg),
        "moto": aws.start(cfg),
        "gcp-sm-emulator": gcp.start(cfg),
        "azure-kv-emulator": azure.start(cfg),
    }
    _wait(cfg, started, "etcd", 30)
    started["kube-apiserver"] = kube.start_apiserver(cfg)
    for name in ("openbao", "moto", "gcp-sm-emulator"):
        _wait(cfg, started, name, 30)
    _wait(cfg, started, "kube-apiserver", 60)
    started["kube-controller-manager"] = kube.start_controller_manager(cfg)
    _wait(cfg, started, "azure-kv-emulator", 30)
    _wait(cfg, started, "kube-controller-manager", 60)


def _wait(cfg: dict[str, Any], started: dict[str, proc.Proc], name: str, timeout: float) -> None:
    probe = HEALTH[name]
    proc.wait_until(name, started[name], lambda: probe(cfg), timeout)


def write_env(cfg: dict[str, Any]) -> None:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env_vars(cfg).items()]
    # the cached kubectl (built by `up` with the other binaries) at the sandbox's version
    kubectl_dir = paths.BIN_CACHE / f"kubectl-{builder.KUBE_VERSION}"
    if (kubectl_dir / "kubectl").exists():
        lines.append(f'export PATH={shlex.quote(str(kubectl_dir))}:"$PATH"')
    # and helm, for deploy/chart/secretsync (`helm install ...` against the sandbox)
    helm_dir = paths.BIN_CACHE / f"helm-{builder.HELM_VERSION}"
    if (helm_dir / "helm").exists():
        lines.append(f'export PATH={shlex.quote(str(helm_dir))}:"$PATH"')
    tmp = paths.ENV_FILE.with_suffix(".tmp")
    tmp.write_text("# written by `python -m sandbox up`; source it\n" + "\n".join(lines) + "\n")
    tmp.rename(paths.ENV_FILE)


def down() -> list[str]:
    """Stop every process the sandbox recorded and remove its state; names of what was stopped."""
    with _lock():
        procs = proc.recorded()
        proc.stop(procs)
        for p in (paths.STATE, paths.RUN):
            shutil.rmtree(p, ignore_errors=True)
        for f in (STATE_FILE, paths.ENV_FILE, paths.DEV / "kubeconfig", PIN_FILE):
            f.unlink(missing_ok=True)
        return [p.name for p in procs]
