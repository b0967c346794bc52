"""``secretsync reencrypt``: re-seal SealedSecret files and whole trees to a new certificate.

Key rotation and cluster migration in a GitOps repository, offline: every SealedSecret found
in the given files (or ``*.yaml``/``*.yml``/``*.json`` under the given directories, hidden
directories skipped) is decrypted with the old private key(s) and sealed to the new
certificate, keeping its name, namespace, scope, template and every other field.

- "Already sealed to the new key" is decided per item, never from the ``key-fingerprint``
  annotation (a ``seal --merge-into`` with a new certificate, an older secretsync or a hand
  edit can make it claim what some items are not; skipping them would strand them on a key
  about to be retired). An RSA-OAEP ciphertext names no key, so each item is decrypted:
  with the new key's private key among ``--private-key``, an item it opens is on the new key;
  without it, an item an old key opens is not, and an item no given key opens counts as on
  the new key only when the document's annotation names that key (else the file fails,
  hinting to add the new private key). The annotation still orders the keys tried (cost
  only, as in the controller). Only the items not on the new key are re-sealed; the others
  keep their ciphertext, so a second run changes nothing (it still pays one decryption per
  item).
- Files are rewritten atomically (temp file + rename, file mode kept; through a symlink the
  target is rewritten and the link kept) and only when an item was re-sealed; files without
  SealedSecrets are never touched. Read-only files are refused and listed. A rewritten YAML
  file loses its comments and original formatting (PyYAML does not keep them); the other
  documents in it are kept. In a tree, anything but a regular file (a FIFO named ``*.yaml``
  would block the read) is skipped with one line.
- A file with any item that cannot be decrypted is left untouched and listed at the end; the
  exit code is then 1.
- Files are processed on a thread pool (RSA releases the GIL); a progress bar is drawn on
  stderr when it is a terminal and the tree is large.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from secretsync.api.names import field
from secretsync.cli._common import (
    add_cluster_arguments,
    atomic_write,
    load_registry,
    public_key_and_fingerprint,
    wrap,
)
from secretsync.cli._files import FileResult, discover, read_regular
from secretsync.cli.main import error
from secretsync.cores import usable_cores
from secretsync.documents import describe, dump_documents, load_documents, sniff_format
from secretsync.errors import CryptoError, SecretSyncError
from secretsync.keys import KeyRegistry, UnsealJob, unseal_many_keyed
from secretsync.sealing import (
    encrypted_items,
    fingerprint_hint,
    is_sealed_secret,
    reseal,
    sealed_label,
)

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
    p.add_argument(
        "--allow-expired",
        action="store_true",
        help="seal to a certificate that has expired or is not valid yet",
    )
    p.add_argument("-n", "--namespace", help="namespace for SealedSecrets without one")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    add_cluster_arguments(p)


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
    """Re-seal the items of ``path`` that are not on the new key (see the module docstring
    for how an item is found to be on it); rewrite the file only if any was."""
    result = FileResult(path)
    new_key_held = fp in registry
    try:
        data = read_regular(path)
        if b"SealedSecret" not in data:
            return result  # cheap skip: never parse (or touch) unrelated files
        docs, fmt = load_documents(data, path, expand_lists=False)
        todo: list[tuple[dict[str, Any], Any, Any, list[str]]] = []
        jobs: list[UnsealJob] = []
        for index, (doc, container, key) in enumerate(_sealed_docs(docs), start=1):
            try:
                label = sealed_label(doc, namespace)
                items = encrypted_items(doc)
                claimed = fingerprint_hint(doc)
            except SecretSyncError as exc:
                raise wrap(describe(doc, index), exc) from exc
            # order only sets the cost (the key that opens an item decides, whatever the
            # annotation says): the claimed key first, else the new one (after a merge)
            hint = claimed if claimed in registry else (fp if new_key_held else None)
            todo.append((doc, container, key, list(items)))
            jobs.extend(UnsealJob(v, label, hint) for v in items.values())
        if not todo:
            return result
        results = unseal_many_keyed(registry, jobs, workers=workers)
        pos = 0
        for doc, container, key, names in todo:
            stale: dict[str, bytes] = {}
            for name in names:
                outcome = results[pos]
                pos += 1
                if isinstance(outcome, CryptoError):
                    if not new_key_held and fingerprint_hint(doc) == fp:
                        continue  # no old key opens it and the document names the new key
                    failure = wrap(f"{describe(doc)}: {field('spec.encryptedData', name)}", outcome)
                    if new_key_held:
                        raise failure
                    raise SecretSyncError(
                        f"{failure.message} (if it is sealed to the new certificate already, "
                        "add that key's private key with --private-key)"
                    )
                value, opened_by = outcome
                if opened_by != fp:
                    stale[name] = value
            if not stale:
                result.current += 1
                continue
            container[key] = reseal(doc, stale, public_key, fp, namespace)
            result.resealed += 1
        if result.resealed and not dry_run:
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
