"""`make image`: the controller's OCI image, with no registry pull, cached and reproducible.

Why this exists: CI must build the image it ships and run the controller *inside* it, on
machines with no container engine and no registry. ``sandbox/rootfs.py`` makes the files (the
same module the Dockerfile's build stage runs); this module packs them with ``umoci`` as an OCI
image layout, byte for byte the same for the same inputs: one layer written here with sorted
entries, root or 65532 ownership and every timestamp at ``SOURCE_DATE_EPOCH`` (default 0), and
the image config and history dated the same. ``umoci`` then only gzips and hashes.

Inputs, and so the cache key: the Debian package set and the mirror's package indexes (the
SHA-256 its ``InRelease`` files list for them; a security update changes them, so the next
build picks it up), the wheel lock, the project's sources and these two modules. A build whose
key is cached is skipped (``~/.cache/secretsync/image/<key>/``); the extracted Debian tarball
is cached on its own key, so a source change costs the Python part only.

``python -m sandbox.image build | check | lock | path``. ``check`` rebuilds from nothing into a
temporary directory and compares the digests (``make image-check``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox import paths, rootfs

CACHE = paths.CACHE / "image"
TOOLS = ("mmdebstrap", "umoci", "runc", "podman", "skopeo")
VERSION = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]["version"]
TAG = VERSION
# The image config; deploy/Dockerfile's final stage says the same (a test compares them).
USER = f"{rootfs.UID}:{rootfs.GID}"
ENTRYPOINT = ["secretsync"]
CMD = ["controller"]
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
PORTS = ["8080/tcp"]
LABELS = {"org.opencontainers.image.title": "secretsync"}


@dataclass
class Built:
    """One built image: its OCI layout and what ``make image`` reports about it."""

    layout: str
    tag: str
    digest: str
    layer_bytes: int  # the gzip-compressed layer, what a registry stores and a node pulls
    unpacked_bytes: int  # the files' sizes
    key: str
    source_key: str
    seconds: float
    cached: bool = False

    @property
    def ref(self) -> str:
        return f"{self.layout}:{self.tag}"

    def summary(self) -> str:
        return (f"image {self.ref}\n  digest {self.digest}\n  compressed "
                f"{self.layer_bytes / 1e6:.1f} MB, unpacked {self.unpacked_bytes / 1e6:.1f} MB"
                f"\n  {'from the cache, ' if self.cached else ''}built in {self.seconds:.0f}s "
                f"(key {self.key})")


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def ensure_tools() -> None:
    """Install the Debian packages this needs (and the tests' runtime) when one is missing."""
    if all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in TOOLS):
        return
    cmd = ["apt-get", "install", "-y", "-qq", *TOOLS]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# --- keys ----------------------------------------------------------------------------------


def _mirror_indexes(arch: str) -> list[str]:
    """``<uri> <suite> <sha256 of Packages>`` for every suite the apt sources name."""
    entries: list[tuple[str, str, list[str]]] = []
    for f in rootfs.apt_sources():
        text = f.read_text()
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):[ \t]*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled") != "no":
                    for uri in fields.get("URIs", "").split():
                        for suite in fields.get("Suites", "").split():
                            entries.append((uri, suite, fields.get("Components", "").split()))
        for line in re.finditer(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", text,
                                re.MULTILINE):
            entries.append((line.group(1), line.group(2), line.group(3).split()))
    out = []
    for uri, suite, comps in entries:
        url = f"{uri.rstrip('/')}/dists/{suite}/InRelease"
        with urllib.request.urlopen(url, timeout=30) as resp:
            release = resp.read().decode(errors="replace")
        sha = release.partition("\nSHA256:\n")[2]
        for comp in comps:
            found = re.search(
                rf"^ ([0-9a-f]{{64}})\s+\d+ {re.escape(comp)}/binary-{arch}/Packages$", sha,
                re.MULTILINE)
            out.append(f"{uri} {suite} {comp} {found.group(1) if found else 'none'}")
    return sorted(out)


def debian_key() -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return sha256(json.dumps([rootfs.PACKAGES, rootfs.SUITE, rootfs.EXTRACT_HOOK, epoch(),
                              _mirror_indexes(arch)]))[:20]


def project_files(repo: Path) -> list[Path]:
    """What the image takes from the project: the Dockerfile's COPY lines' files."""
    return [repo / "pyproject.toml", repo / "README.md", *sorted(
        p for p in (repo / "secretsync").rglob("*") if p.is_file() and "__pycache__" not in
        p.parts and p.suffix != ".pyc")]


def source_key(repo: Path = paths.REPO) -> str:
    """Everything but the mirror's state: the project's files, the lock, the build code."""
    h = hashlib.sha256()
    for p in project_files(repo):
        h.update(f"{p.relative_to(repo)}\0".encode() + p.read_bytes() + b"\0")
    for p in (rootfs.LOCK, Path(rootfs.__file__), Path(__file__)):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(str(epoch()).encode())
    return h.hexdigest()[:20]


def snapshot(dest: Path) -> Path:
    """A copy of the project files, so that two builds compared see the same sources even
    while the working tree is being edited."""
    for p in project_files(paths.REPO):
        target = dest / p.relative_to(paths.REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    return dest


# --- packing -------------------------------------------------------------------------------


def write_layer(root: Path, out: Path, mtime: int) -> int:
    """An uncompressed layer of ``root``: sorted, numeric owners (65532 for what the tree
    gives it, else root), clamped times. Returns the files' total size."""
    total = 0
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                path = Path(top) / name
                info = tar.gettarinfo(str(path), str(path.relative_to(root)))
                owned = info.uid == rootfs.UID
                info.uid, info.gid = (rootfs.UID, rootfs.GID) if owned else (0, 0)
                info.uname = info.gname = ""
                info.mtime = mtime
                if info.isreg():
                    total += info.size
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return total


def _umoci(*args: str) -> None:
    rootfs.run(["umoci", *args])


def pack(root: Path, layout: Path, mtime: int) -> tuple[str, int, int]:
    """``root`` as the one layer of ``layout:TAG``; (manifest digest, gzip size, file bytes)."""
    created = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    image = f"{layout}:{TAG}"
    with tempfile.TemporaryDirectory(prefix="secretsync-layer-") as tmp:
        layer = Path(tmp) / "layer.tar"
        unpacked = write_layer(root, layer, mtime)
        _umoci("init", "--layout", str(layout))
        _umoci("new", "--image", image)
        _umoci("raw", "add-layer", "--image", image, "--history.created", created,
               "--history.created_by", "python -m sandbox.image build", str(layer))
    config = ["--config.user", USER, "--config.workingdir", "/", "--created", created,
              "--author", "secretsync", "--no-history"]
    config += [a for e in ENTRYPOINT for a in ("--config.entrypoint", e)]
    config += [a for c in CMD for a in ("--config.cmd", c)]
    config += [a for k, v in ENV.items() for a in ("--config.env", f"{k}={v}")]
    config += [a for p in PORTS for a in ("--config.exposedports", p)]
    config += [a for k, v in LABELS.items() for a in ("--config.label", f"{k}={v}")]
    _umoci("config", "--image", image, *config)
    _umoci("gc", "--layout", str(layout))
    manifest = manifest_of(layout)
    (layer_desc,) = manifest["layers"]
    return str(manifest["digest"]), int(layer_desc["size"]), unpacked


def manifest_of(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    (desc,) = [m for m in index["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG]
    algo, _, hexd = desc["digest"].partition(":")
    manifest: dict[str, Any] = json.loads((layout / "blobs" / algo / hexd).read_text())
    manifest["digest"] = desc["digest"]
    return manifest


def config_of(layout: Path) -> dict[str, Any]:
    """The image config (``config.User``, ``Entrypoint``, ...) of ``layout:TAG``."""
    desc = manifest_of(layout)["config"]
    algo, _, hexd = str(desc["digest"]).partition(":")
    return dict(json.loads((layout / "blobs" / algo / hexd).read_text()))


# --- building ------------------------------------------------------------------------------


def _debian_tarball(key: str, directory: Path) -> Path:
    tarball = directory / f"debian-{key}.tar"
    if not tarball.exists():
        directory.mkdir(parents=True, exist_ok=True)
        part = directory / f".debian-{key}.{os.getpid()}.tar"
        rootfs.debian_tarball(part, epoch())
        part.rename(tarball)
    return tarball


def build(*, cache: bool = True, out: Path | None = None, source: Path = paths.REPO) -> Built:
    """The image for the current inputs: from the cache, or built (into ``out`` if given,
    else the cache). ``cache=False`` reuses nothing (a fresh Debian extraction too). One
    build at a time per machine (``make image`` and a pytest session may ask together)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        return _build(cache, out, source)


def _build(cache: bool, out: Path | None, source: Path) -> Built:
    started = time.monotonic()
    skey = source_key(source)
    dkey = debian_key()
    key = sha256(f"{dkey}:{skey}")[:20]
    dest = out or CACHE / key
    record = dest / "image.json"
    if cache and record.exists():
        return Built(**{**json.loads(record.read_text()), "cached": True})
    with tempfile.TemporaryDirectory(prefix="secretsync-image-") as tmp:
        tarball = _debian_tarball(dkey, CACHE if cache else Path(tmp))
        tree = Path(tmp) / "rootfs"
        rootfs.build(tree, tarball=tarball, cache=CACHE if cache else None, source=source,
                     epoch=epoch())
        staging = Path(tmp) / "out"
        staging.mkdir()
        digest, layer, unpacked = pack(tree, staging / "oci", epoch())
        built = Built(str(dest / "oci"), TAG, digest, layer, unpacked, key, skey,
                      round(time.monotonic() - started, 1))
        (staging / "image.json").write_text(json.dumps(asdict(built), indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging, dest)
    if cache:
        (CACHE / f"source-{skey}.json").write_text(record.read_text())
        _prune_cache(keep={key, dkey})
    return built


def _prune_cache(keep: set[str], count: int = 2) -> None:
    """Keep the newest ``count`` of each kind of entry (and the current ones)."""
    entries = sorted(CACHE.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    images = [p for p in entries if p.is_dir() and (p / "image.json").exists()]
    tarballs = [p for p in entries if p.name.startswith("debian-")]
    pointers = [p for p in entries if p.name.startswith("source-")]
    deps = [p for p in entries if p.name.startswith("deps-")]
    for group in (images, tarballs, pointers, deps):
        for p in group[count:]:
            if not any(k in p.name for k in keep):
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def find_built() -> Built | None:
    """The image ``make image`` built from the current sources (any mirror state), if any;
    offline: the tests use it."""
    record = CACHE / f"source-{source_key()}.json"
    if not record.exists():
        return None
    built = Built(**json.loads(record.read_text()))
    return built if Path(built.layout, "index.json").exists() else None


def lock() -> None:
    """Re-resolve ``deploy/requirements-image.txt`` from pyproject.toml (keeping the pins
    that still fit): the image's wheels, for CPython 3.11 on the tree's glibc."""
    pyproject = paths.REPO / "pyproject.toml"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lock.txt"
        if rootfs.LOCK.exists():
            shutil.copy(rootfs.LOCK, out)
        rootfs.run([str(paths.VENV_BIN / "uv"), "pip", "compile", "--quiet", str(pyproject),
                    "--extra", "all", "--python-version", "3.11", "--python-platform",
                    "x86_64-manylinux_2_36", "--only-binary", ":all:", "--generate-hashes",
                    "--no-header", "--no-annotate", "-o", str(out)])
        header = (f"{rootfs.lock_header(pyproject)}\n# The controller image's wheels "
                  "(sandbox/rootfs.py, deploy/Dockerfile): `make image-lock` writes this.\n")
        rootfs.LOCK.write_text(header + out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.image", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("command", choices=["build", "check", "lock", "path"])
    args = ap.parse_args(argv)
    try:
        if args.command == "lock":
            lock()
            print(f"image: wrote {rootfs.LOCK}")
            return 0
        if args.command == "path":
            found = find_built()
            print(found.ref if found else "image: not built for these sources; run `make image`")
            return 0 if found else 1
        ensure_tools()
        if args.command == "build":
            print(build().summary())
            return 0
        with tempfile.TemporaryDirectory(prefix="secretsync-check-") as tmp:
            source = snapshot(Path(tmp) / "src")
            first = build(source=source)
            print(first.summary())
            again = build(cache=False, out=Path(tmp) / "again", source=source)
        same = again.digest == first.digest
        print(f"rebuilt from nothing in {again.seconds:.0f}s: {again.digest} "
              f"({'the same' if same else 'DIFFERENT'})")
        return 0 if same else 1
    except (rootfs.RootfsError, OSError, subprocess.CalledProcessError) as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
