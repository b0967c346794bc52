"""The controller image's root filesystem, from Debian's archive and PyPI wheels alone.

Why this exists: no registry can be reached where the project is built and tested, so the image
has no base image to start from. Its files come from the two sources every build machine
reaches: Debian's package mirror (the interpreter and the C libraries the wheels link against)
and PyPI (the locked wheels, ``deploy/requirements-image.txt``). Both build paths use this one
module, so they produce the same files: ``make image`` (``sandbox/image.py`` packs the tree as
an OCI image) and ``deploy/Dockerfile`` (its build stage runs ``python3 -m sandbox.rootfs
/rootfs`` and its final stage is that tree on ``scratch``).

Debian packages are *extracted*, not installed (``mmdebstrap --variant=extract``): no
maintainer script runs, so neither a shell nor dpkg is needed in the tree, and none is left in
it. What the scripts would have made and the interpreter needs is written here instead: the CA
bundle, ``/etc/passwd`` with the non-root user, the entry-point script. Everything that is not
read at run time goes: documentation, man pages, locales, the tools of the packages pulled in
as dependencies (dpkg, tar, debconf, ...), the stdlib's tests, pip, ``__pycache__``, the SDKs'
unused service data. Standard library only: it runs in the Dockerfile's build stage too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from importlib.metadata import PathDistribution
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "deploy" / "requirements-image.txt"
SUITE = "bookworm"
PYTHON = "python3.11"
# python3.11-minimal rather than python3-minimal: the latter depends on dpkg
# libstdc++6: grpcio's extension (the GCP backend) links it
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "ca-certificates",
            "base-files")
# pyproject.toml's build-system, pinned: the wheel records the version that built it
BUILD_BACKEND = ("setuptools==84.2.1", "wheel==0.48.0")
UID = GID = 65532
SITE = Path("usr/local/lib/python3.11/dist-packages")  # on Debian's python's sys.path
# packages extracted only because another one depends on them; nothing of theirs is used
DROP_PACKAGES = {"dpkg", "tar", "debconf", "mawk", "readline-common"}
DROP_PATHS = (
    "bin", "sbin", "usr/sbin", "usr/libexec", "usr/games", "lib/systemd", "usr/lib/binfmt.d",
    "usr/lib/mime", "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/aarch64-linux-gnu/gconv",
    "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/share/bug", "usr/share/bash-completion", "usr/share/polkit-1", "usr/share/pixmaps",
    "usr/share/binfmts", "usr/share/menu", "usr/share/debconf", "usr/share/dpkg",
    "usr/share/perl5", "usr/share/ca-certificates", "usr/share/misc", "usr/share/dict",
    "usr/share/base-files", "etc/apt", "etc/dpkg", "etc/alternatives", "etc/cron.daily",
    "etc/logrotate.d", "etc/debconf.conf", "etc/hostname", "etc/resolv.conf", "etc/fstab",
    "etc/rmt", "etc/profile", "etc/update-motd.d",
    "var/cache", "var/log", "var/lib/apt", "var/lib/misc", "var/backups", "var/mail",
    "var/spool", "var/opt", "var/local", "dev", "root", "srv", "opt", "mnt", "media",
    "home", "boot",
    # the interpreter's parts never imported by a controller
    "usr/lib/python3.11/test", "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/turtledemo",
    "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter", "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/turtle.py",
    "usr/lib/python3.11/__phello__",
)
TEST_EXTENSIONS = re.compile(r"^(_test\w*|_ctypes_test|_xxtestfuzz|xxlimited\w*)\.cpython-")
# botocore's service models: only those the AWS backend builds clients for (and the SSO
# credential providers' two), plus the top-level endpoint and retry data
AWS_SERVICES = {"secretsmanager", "ssm", "sts", "sso", "sso-oidc"}
# whole subpackages no import of ours reaches: the asyncio copy of the Kubernetes client
# (we use only its sync ``client`` and ``config``, from kube/fallback.py) and boto3's
# resource models (we use botocore clients)
DROP_SITE = ("kubernetes/aio", "boto3/data", "bin")
DIST_INFO_DROP = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
# extract hook: record each package's control fields (for image scanners, in the distroless
# layout) and its file list (to drop the packages that are not needed)
EXTRACT_HOOK = r"""
set -eu
mkdir -p "$1/var/lib/dpkg/status.d" "$1/var/lib/dpkg/lists.d"
for deb in "$1"/var/cache/apt/archives/*.deb; do
  pkg=$(dpkg-deb --field "$deb" Package)
  dpkg-deb --field "$deb" > "$1/var/lib/dpkg/status.d/$pkg"
  dpkg-deb --fsys-tarfile "$deb" | tar -t > "$1/var/lib/dpkg/lists.d/$pkg"
done
"""


class RootfsError(RuntimeError):
    """A step of the build failed; the message says which and why."""


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, env={**os.environ, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        out = (done.stdout + done.stderr)[-4000:]
        raise RootfsError(f"`{' '.join(cmd[:4])} ...` failed (exit {done.returncode}):\n{out}")


def apt_sources() -> list[Path]:
    """The host's own apt source files (its mirror; never a hard-coded host)."""
    d = Path("/etc/apt/sources.list.d")
    files = sorted(p for p in d.glob("*") if p.suffix in (".sources", ".list")) if d.is_dir() \
        else []
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file() and re.search(r"^\s*deb\s", legacy.read_text(), re.MULTILINE):
        files.insert(0, legacy)
    if not files:
        raise RootfsError("no apt sources in /etc/apt: cannot find a Debian mirror")
    return files


def debian_tarball(out: Path, epoch: int) -> None:
    """The packages and their dependencies, extracted (no scripts run) into a tarball."""
    cmd = ["mmdebstrap", "--quiet", "--variant=extract", f"--include={','.join(PACKAGES)}",
           f"--extract-hook={EXTRACT_HOOK}", SUITE, str(out), *map(str, apt_sources())]
    run(cmd, env={"SOURCE_DATE_EPOCH": str(epoch)})


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _walk(root: Path) -> Iterator[Path]:
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(top) / name


def ca_bundle(root: Path) -> None:
    """What update-ca-certificates would have written: every Mozilla root, in name order."""
    certs = root / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    bundle = sorted((root / "usr/share/ca-certificates/mozilla").glob("*.crt"))
    if not bundle:
        raise RootfsError("no CA certificates in the tree")
    (certs / "ca-certificates.crt").write_text("".join(
        p.read_text().rstrip("\n") + "\n" for p in bundle))


def prune_debian(root: Path) -> None:
    """Drop the packages and paths nothing reads at run time; keep the copyright files."""
    lists, status = root / "var/lib/dpkg/lists.d", root / "var/lib/dpkg/status.d"
    for pkg in DROP_PACKAGES:
        for line in (lists / pkg).read_text().splitlines() if (lists / pkg).exists() else []:
            p = root / line.removeprefix("./")
            if line.strip("./") and (p.is_symlink() or p.is_file()):
                p.unlink()
    for rel in DROP_PATHS:
        _remove(root / rel)
    for p in (root / "usr/bin").iterdir():
        if p.name != PYTHON:
            _remove(p)
    (root / "usr/bin/python3").symlink_to(PYTHON)
    for p in (root / "usr/lib/python3.11/lib-dynload").iterdir():
        if TEST_EXTENSIONS.match(p.name):
            p.unlink()
    docs = root / "usr/share/doc"
    for p in sorted(_walk(docs), reverse=True) if docs.is_dir() else []:
        if p.name != "copyright" and not p.is_dir():
            p.unlink()
        elif p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            p.rmdir()
    # a package stays listed for image scanners as long as a file of it is left
    for entry in sorted(lists.iterdir()):
        files = [root / ln.removeprefix("./") for ln in entry.read_text().splitlines()]
        if not any(f.is_file() or f.is_symlink() for f in files if f != root):
            (status / entry.name).unlink(missing_ok=True)
    shutil.rmtree(lists)
    for p in sorted(_walk(root), reverse=True):  # directories emptied by the above
        if p.is_dir() and not p.is_symlink() and not any(p.iterdir()) and p.parent != root:
            p.rmdir()


def pip_platforms(root: Path) -> list[str]:
    """The wheel platform tags the tree's glibc runs: manylinux_2_17 up to its version."""
    fields = (root / "var/lib/dpkg/status.d/libc6").read_text()
    m = re.search(r"^Version: (\d+)\.(\d+)", fields, re.MULTILINE)
    if not m or m.group(1) != "2":
        raise RootfsError("cannot read libc6's version from the tree")
    arch = platform.machine()
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(int(m.group(2)), 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def project_wheel(source: Path, out: Path) -> Path:
    """The project's wheel, built from a copy holding only what the Dockerfile copies."""
    with tempfile.TemporaryDirectory(prefix="secretsync-src-") as tmp:
        src = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, src / name)
        shutil.copytree(source / "secretsync", src / "secretsync",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # the build backend is pinned too: its version is written into the wheel's metadata
        pins = src / "build-constraints.txt"
        pins.write_text("".join(f"{p}\n" for p in BUILD_BACKEND))
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
               str(out), str(src)]
        helptext = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True).stdout
        if "--build-constraint" in helptext:
            run([*cmd, "--build-constraint", str(pins)])
        else:  # pip < 25.3 applies PIP_CONSTRAINT to the isolated build environment
            run(cmd, env={"PIP_CONSTRAINT": str(pins)})
    (wheel,) = out.glob("secretsync-*.whl")
    return wheel


def requirements_hash(pyproject: Path) -> str:
    """What the lock was resolved from: the runtime dependencies and extras (not ``test``)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = {k: v for k, v in project.get("optional-dependencies", {}).items() if k != "test"}
    blob = json.dumps([project.get("dependencies", []), extras], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lock_header(pyproject: Path) -> str:
    return f"# requirements-hash: {requirements_hash(pyproject)}"


def pip_install(site: Path, requirements: Path, platforms: list[str]) -> None:
    """Hash-checked wheels only, for the tree's interpreter and glibc, not byte-compiled."""
    plats = [a for p in platforms for a in ("--platform", p)]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-warn-script-location", "--target", str(site), "--no-deps", "--require-hashes",
         "--only-binary=:all:", "--no-compile", "--python-version", "3.11", "--implementation",
         "cp", "--abi", "cp311", *plats, "-r", str(requirements)])


def install_dependencies(site: Path, lock: Path, source: Path, platforms: list[str],
                         cache: Path | None) -> None:
    """The locked wheels, pruned, into ``site``; with ``cache``, installed once per lock
    and platform set under it and copied from there."""
    if lock_header(source / "pyproject.toml") not in lock.read_text().splitlines():
        raise RootfsError(f"{lock} was not resolved from pyproject.toml's current "
                          "dependencies: run `make image-lock`")
    if cache is None:
        pip_install(site, lock, platforms)
        prune_python(site)
        return
    key = hashlib.sha256("\0".join([lock.read_text(), *platforms, Path(__file__).read_text()])
                         .encode()).hexdigest()[:20]
    done = cache / f"deps-{key}"
    if not done.is_dir():
        part = Path(tempfile.mkdtemp(prefix=".deps-", dir=cache))
        try:
            pip_install(part / "site", lock, platforms)
            prune_python(part / "site")
            (part / "site").rename(done)
        finally:
            shutil.rmtree(part)
    shutil.copytree(done, site, symlinks=True)


def install_project(site: Path, source: Path, platforms: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="secretsync-wheel-") as tmp:
        wheel = project_wheel(source, Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text(f"secretsync @ {wheel.as_uri()} --hash=sha256:{digest}\n")
        pip_install(site, reqs, platforms)
    prune_python(site)


def prune_python(site: Path) -> None:
    for rel in DROP_SITE:
        _remove(site / rel)
    data = site / "botocore/data"
    for p in data.iterdir() if data.is_dir() else []:
        if p.is_dir() and p.name not in AWS_SERVICES:
            shutil.rmtree(p)
    for p in sorted(_walk(site), reverse=True):
        if p.is_dir() and p.name in ("__pycache__", "tests", "test") and not p.is_symlink():
            shutil.rmtree(p)
        elif p.suffix in (".pyc", ".pyi") or (p.parent.name.endswith(".dist-info")
                                              and p.name in DIST_INFO_DROP):
            p.unlink()


def add_files(root: Path) -> None:
    """What maintainer scripts and a base image would have provided, and the entry point."""
    etc = root / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                f"nonroot:x:{UID}:{GID}:nonroot:/home/nonroot:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nnonroot:x:{GID}:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    home = root / "home/nonroot"
    home.mkdir(parents=True)
    os.chown(home, UID, GID)
    home.chmod(0o700)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "run").mkdir(exist_ok=True)  # where the kubelet projects the ServiceAccount
    if not (root / "var/run").is_symlink():
        (root / "var/run").symlink_to("/run")
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (info,) = (root / SITE).glob("secretsync-*.dist-info")
    for ep in PathDistribution(info).entry_points.select(group="console_scripts"):
        script = bindir / ep.name
        script.write_text(f"#!/usr/bin/{PYTHON}\nimport sys\nfrom {ep.module} import {ep.attr}\n"
                          f"sys.exit({ep.attr}())\n")
        script.chmod(0o755)


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF file (else nothing)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return []
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize)
                for i in range(shnum)]
    out = []
    for _name, kind, _flags, _addr, offset, size, link, _info in sections:
        if kind != 6:  # SHT_DYNAMIC; its sh_link is the string table
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 1:  # DT_NEEDED
                out.append(data[strtab + value:data.index(b"\0", strtab + value)].decode())
    return out


def check_libraries(root: Path) -> None:
    """Every shared library an extension module (the stdlib's or a wheel's) links is in the
    tree: a C library missing from PACKAGES fails the build, not the controller's start."""
    have = {p.name for p in _walk(root) if ".so" in p.name}
    missing = {}
    for d in (root / "usr/lib/python3.11/lib-dynload", root / SITE):
        for so in d.rglob("*.so*"):
            if so.is_file() and not so.is_symlink():
                for lib in elf_needed(so):
                    if lib not in have:
                        missing[str(so.relative_to(root))] = lib
    if missing:
        raise RootfsError(f"shared libraries missing from the tree (add their Debian "
                          f"packages to PACKAGES): {missing}")


def clamp_mtimes(root: Path, epoch: int) -> None:
    for p in [root, *_walk(root)]:
        os.utime(p, (epoch, epoch), follow_symlinks=False)


def build(root: Path, *, tarball: Path | None = None, cache: Path | None = None,
          lock: Path = LOCK, source: Path = REPO, epoch: int = 0) -> None:
    """The whole tree at ``root`` (which must not exist). ``tarball``: an already extracted
    Debian package set (cached by the caller); without it, mmdebstrap runs. ``cache``: where
    the installed dependencies are kept between builds."""
    if os.geteuid() != 0:
        raise RootfsError("run as root: the tree's files must be owned by root and 65532")
    os.umask(0o022)
    root.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="secretsync-deb-") as tmp:
        if tarball is None:
            tarball = Path(tmp) / "debian.tar"
            debian_tarball(tarball, epoch)
        run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)])
    ca_bundle(root)
    prune_debian(root)
    platforms = pip_platforms(root)
    install_dependencies(root / SITE, lock, source, platforms, cache)
    install_project(root / SITE, source, platforms)
    add_files(root)
    check_libraries(root)
    clamp_mtimes(root, epoch)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.rootfs",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory to create")
    args = ap.parse_args(argv)
    try:
        build(args.out, epoch=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except RootfsError as exc:
        print(f"rootfs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
