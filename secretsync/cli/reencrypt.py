"""``secretsync reencrypt``: re-seal SealedSecret files and whole trees to a new certificate.

Key rotation and cluster migration in a GitOps repository, offline: every SealedSecret found
in the given files (or ``*.yaml``/``*.yml``/``*.json`` under the given directories, hidden
directories skipped) is decrypted with the old private key(s) and sealed to the new
certificate, keeping its name, namespace, scope, template and every other field.

- Files are rewritten atomically (temp file + rename, file mode kept) and only when something
  changed: documents already carrying the new key's fingerprint are left as they are, and
  files without SealedSecrets are never touched. A rewritten YAML file loses its comments
  and original formatting (PyYAML does not keep them); the other documents in it are kept.
- A file with any item that cannot be decrypted is left untouched and listed at the end; the
  exit code is then 1.
- Files are processed on a thread pool (RSA releases the GIL); a progress bar is drawn on
  stderr when it is a terminal and the tree is large.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from secretsync.cli._common import (
    add_cluster_arguments,
    atomic_write,
    load_registry,
    public_key_and_fingerprint,
    wrap,
)
from secretsync.cli.main import error
from secretsync.cores import usable_cores
from secretsync.documents import describe, dump_documents, load_documents, sniff_format
from secretsync.errors import CryptoError, SecretSyncError
from secretsync.keys import KeyRegistry, UnsealJob, unseal_many
from secretsync.sealing import (
    encrypted_items,
    fingerprint_hint,
    is_sealed_secret,
    reseal,
    sealed_label,
)

EXTENSIONS = (".yaml", ".yml", ".json")
PROGRESS_MIN_FILES = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="SealedSecret files or directories")
    p.add_argument(
        "--private-key",
        action="append",
        metavar="FILE",
        help="old PEM private key or kubectl-exported key Secret(s); repeatable",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="let the controller re-encrypt to its newest key (no private key needed here)",
    )
    from secretsync.cli.cluster_cmds import add_controller_arguments

    add_controller_arguments(p)
    p.add_argument(
        "--cert",
        metavar="PATH|URL",
        help="the new certificate (default: fetch it from the controller's ConfigMap)",
    )
    p.add_argument("-n", "--namespace", help="namespace for SealedSecrets without one")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    add_cluster_arguments(p)


@dataclass
class FileResult:
    path: str
    resealed: int = 0
    current: int = 0
    error: str | None = None


def discover(paths: list[str]) -> tuple[list[str], list[FileResult]]:
    files: list[str] = []
    missing: list[FileResult] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(EXTENSIONS))
        elif os.path.isfile(path):
            files.append(path)
        else:
            missing.append(FileResult(path, error="no such file or directory"))
    return files, missing


def _sealed_docs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """(doc, container, key) for every SealedSecret, including those inside a ``List``."""
    for i, doc in enumerate(docs):
        if is_sealed_secret(doc):
            yield doc, docs, i
        elif doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            for j, item in enumerate(doc["items"]):
                if isinstance(item, dict) and is_sealed_secret(item):
                    yield item, doc["items"], j


def reencrypt_file(
    path: str,
    registry: KeyRegistry,
    public_key: rsa.RSAPublicKey,
    fp: str,
    *,
    namespace: str | None = None,
    workers: int = 1,
    dry_run: bool = False,
) -> FileResult:
    result = FileResult(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if b"SealedSecret" not in data:
            return result  # cheap skip: never parse (or touch) unrelated files
        docs, fmt = load_documents(data, path, expand_lists=False)
        todo: list[tuple[dict[str, Any], Any, Any, list[str]]] = []
        jobs: list[UnsealJob] = []
        for index, (doc, container, key) in enumerate(_sealed_docs(docs), start=1):
            if fingerprint_hint(doc) == fp:
                result.current += 1
                continue
            try:
                label = sealed_label(doc, namespace)
                items = encrypted_items(doc)
            except SecretSyncError as exc:
                raise wrap(describe(doc, index), exc) from exc
            hint = fingerprint_hint(doc)
            todo.append((doc, container, key, list(items)))
            jobs.extend(UnsealJob(v, label, hint) for v in items.values())
        if not todo:
            return result
        results = unseal_many(registry, jobs, workers=workers)
        pos = 0
        for doc, container, key, names in todo:
            values: dict[str, bytes] = {}
            for name in names:
                value = results[pos]
                pos += 1
                if isinstance(value, CryptoError):
                    raise wrap(f"{describe(doc)}: spec.encryptedData.{name}", value)
                values[name] = value
            container[key] = reseal(doc, values, public_key, fp, namespace)
            result.resealed += 1
        if not dry_run:
            text = data.decode("utf-8-sig")
            if fmt == "json" and text.lstrip().startswith("["):
                out = json.dumps(docs, indent=2, ensure_ascii=False) + "\n"
            else:
                out = dump_documents(docs, fmt if fmt else sniff_format(text))
            atomic_write(path, out.encode("utf-8"))
    except SecretSyncError as exc:
        result.error = exc.message
        result.resealed = 0
    except OSError as exc:
        result.error = exc.strerror or type(exc).__name__
        result.resealed = 0
    return result


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\rreencrypt [{bar}] {self.done}/{self.total} files")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    if args.cluster:
        from secretsync.cli.cluster_cmds import reencrypt_cluster

        return reencrypt_cluster(args)
    if not args.private_key:
        return error("give the old key(s) with --private-key FILE, or use --cluster")
    registry = load_registry(args.private_key)
    public_key, fp = public_key_and_fingerprint(args, args.cert)
    files, failed = discover(args.paths)
    cores = usable_cores()
    progress = _Progress(len(files), sys.stderr.isatty() and len(files) >= PROGRESS_MIN_FILES)
    results: list[FileResult] = []

    def one(path: str, workers: int) -> FileResult:
        return reencrypt_file(
            path,
            registry,
            public_key,
            fp,
            namespace=args.namespace,
            workers=workers,
            dry_run=args.dry_run,
        )

    if len(files) <= 1:
        for path in files:
            results.append(one(path, cores))
            progress.step()
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=cores, thread_name_prefix="reencrypt") as pool:
            for res in pool.map(lambda p: one(p, 1), files):
                results.append(res)
                progress.step()
    progress.close()
    failed.extend(r for r in results if r.error)
    resealed = sum(r.resealed for r in results)
    changed = sum(1 for r in results if r.resealed)
    current = sum(r.current for r in results)
    if not args.quiet:
        verb = "would re-encrypt" if args.dry_run else "re-encrypted"
        print(
            f"secretsync: {verb} {resealed} SealedSecret(s) in {changed} file(s); "
            f"{current} already sealed to {fp[:16]}; {len(files)} file(s) scanned",
            file=sys.stderr,
        )
    for r in failed:
        error(f"{r.path}: {r.error}")
    if failed:
        return error(f"{len(failed)} file(s) could not be re-encrypted and were left untouched")
    return 0
