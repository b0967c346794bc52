"""``secretsync unseal``: offline recovery -- SealedSecret(s) + private key(s) -> v1 Secret(s).

Accepts ``secretsync.io/v1alpha1`` and ``bitnami.com/v1alpha1`` (same format). Every item of
every document is decrypted on a thread pool (all cores); the fingerprint annotation picks
the key to try first.
"""

from __future__ import annotations

import argparse
from typing import Any

from secretsync.api.names import field
from secretsync.cli._common import (
    add_output_arguments,
    load_registry,
    read_input,
    wrap,
    write_output,
)
from secretsync.documents import describe, dump_documents, load_documents
from secretsync.errors import CryptoError, InvalidInput, SecretSyncError
from secretsync.keys import KeyRegistry, UnsealJob, unseal_many
from secretsync.sealing import (
    encrypted_items,
    fingerprint_hint,
    sealed_label,
    secret_from_items,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_output_arguments(p)
    p.add_argument(
        "--private-key",
        action="append",
        required=True,
        metavar="FILE",
        help="PEM private key or kubectl-exported key Secret(s); repeatable",
    )
    p.add_argument("-n", "--namespace", help="namespace for SealedSecrets without one")


def unseal_documents(
    docs: list[dict[str, Any]],
    registry: KeyRegistry,
    source: str,
    default_namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Secrets for SealedSecret docs; raises on the first document that fails (in order)."""
    plans: list[tuple[int, dict[str, Any], list[str]]] = []
    jobs: list[UnsealJob] = []
    for index, doc in enumerate(docs, start=1):
        try:
            label = sealed_label(doc, default_namespace)
            items = encrypted_items(doc)
            hint = fingerprint_hint(doc)
        except SecretSyncError as exc:
            raise wrap(f"{source}: {describe(doc, index)}", exc) from exc
        plans.append((index, doc, list(items)))
        jobs.extend(UnsealJob(v, label, hint) for v in items.values())
    results = unseal_many(registry, jobs)
    out: list[dict[str, Any]] = []
    pos = 0
    for index, doc, names in plans:
        chunk = results[pos : pos + len(names)]
        pos += len(names)
        values: dict[str, bytes] = {}
        for name, result in zip(names, chunk, strict=True):
            if isinstance(result, CryptoError):
                where = field("spec.encryptedData", name)
                raise wrap(f"{source}: {describe(doc, index)}: {where}", result) from result
            values[name] = result
        try:
            out.append(secret_from_items(doc, values, default_namespace))
        except SecretSyncError as exc:
            raise wrap(f"{source}: {describe(doc, index)}", exc) from exc
    return out


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args.private_key)
    data, source = read_input(args.input)
    docs, in_fmt = load_documents(data, source)
    if not docs:
        raise InvalidInput(f"{source}: no documents to unseal")
    secrets = unseal_documents(docs, registry, source, args.namespace)
    # plaintext inside: a new output file is readable by its owner only
    write_output(args.output, dump_documents(secrets, args.format or in_fmt), mode=0o600)
    return 0
