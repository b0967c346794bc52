"""``secretsync seal``: Secret(s) in, SealedSecret(s) out -- offline with ``--cert``.

The hot path of the CLI: imports only argparse, yaml, json and cryptography's RSA/AES
(``kubernetes`` only when no ``--cert`` is given). One RSA-OAEP encryption per item.
"""

from __future__ import annotations

import argparse
import sys

from secretsync import api
from secretsync.api.names import check_names
from secretsync.cli._common import (
    add_cluster_arguments,
    add_output_arguments,
    atomic_write,
    public_key_and_fingerprint,
    read_file,
    read_input,
    wrap,
    write_output,
)
from secretsync.documents import describe, dump_documents, load_documents
from secretsync.errors import InvalidInput, SecretSyncError
from secretsync.sealing import (
    fingerprint_hint,
    is_sealed_secret,
    merge_into,
    seal_raw,
    seal_secret,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_output_arguments(p)
    p.add_argument(
        "--cert",
        metavar="PATH|URL",
        help="certificate (or PEM public key) file or https:// URL; "
        "default: fetch it from the controller's ConfigMap",
    )
    p.add_argument(
        "--scope",
        choices=api.SCOPES,
        help="strict (default): name+namespace bound; namespace-wide: any name in the "
        "namespace; cluster-wide: anywhere. Default: from the Secret's annotations",
    )
    p.add_argument("-n", "--namespace", help="namespace for Secrets without one (and --raw)")
    p.add_argument("--name", help="name for --raw (strict scope)")
    p.add_argument(
        "--raw",
        action="store_true",
        help="seal one value (stdin or --from-file) and print only the base64 item",
    )
    p.add_argument("--from-file", metavar="F", help="the value for --raw")
    p.add_argument(
        "--merge-into",
        metavar="FILE",
        help="seal the Secret's items into this existing SealedSecret file (in place)",
    )
    p.add_argument(
        "--allow-empty-data", action="store_true", help="accept Secrets without any data"
    )
    p.add_argument(
        "--allow-expired",
        action="store_true",
        help="seal to a certificate that has expired or is not valid yet",
    )
    add_cluster_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.raw:
        return _run_raw(args)
    if args.input in (None, "-") and sys.stdin is not None and sys.stdin.isatty():
        print("secretsync: reading Secret(s) from stdin (Ctrl-D to end)", file=sys.stderr)
    data, source = read_input(args.input)
    docs, in_fmt = load_documents(data, source)
    if not docs:
        raise InvalidInput(f"{source}: no documents to seal")
    public_key, fp = public_key_and_fingerprint(args, args.cert)
    if args.merge_into:
        return _run_merge(args, docs, source, public_key, fp)
    out = []
    for index, doc in enumerate(docs, start=1):
        try:
            out.append(
                seal_secret(
                    doc,
                    public_key,
                    fp,
                    scope=args.scope,
                    default_namespace=args.namespace,
                    allow_empty_data=args.allow_empty_data,
                )
            )
        except SecretSyncError as exc:
            raise wrap(f"{source}: {describe(doc, index)}", exc) from exc
    write_output(args.output, dump_documents(out, args.format or in_fmt))
    return 0


def _run_raw(args: argparse.Namespace) -> int:
    scope = args.scope or api.SCOPE_STRICT
    if scope != api.SCOPE_CLUSTER and not args.namespace:
        raise InvalidInput(f"--raw with {scope} scope needs --namespace")
    if scope == api.SCOPE_STRICT and not args.name:
        raise InvalidInput("--raw with strict scope needs --name")
    check_names(args.name or "", args.namespace or "", "--namespace", "--name")
    value = read_file(args.from_file) if args.from_file else read_input(None)[0]
    public_key, _ = public_key_and_fingerprint(args, args.cert)
    item = seal_raw(value, public_key, scope, args.namespace or "", args.name or "")
    write_output(args.output, item)
    return 0


def _run_merge(
    args: argparse.Namespace,
    secrets: list[dict[str, object]],
    source: str,
    public_key: object,
    fp: str,
) -> int:
    target = args.merge_into
    existing, fmt = load_documents(read_file(target), target)
    sealed_idx = [i for i, d in enumerate(existing) if is_sealed_secret(d)]
    if len(sealed_idx) != 1:
        raise InvalidInput(
            f"{target}: --merge-into needs exactly one SealedSecret in the file "
            f"(found {len(sealed_idx)})"
        )
    i = sealed_idx[0]
    doc = existing[i]
    before = fingerprint_hint(doc)
    for index, secret in enumerate(secrets, start=1):
        try:
            doc = merge_into(doc, secret, public_key, fp)  # type: ignore[arg-type]
        except SecretSyncError as exc:
            raise wrap(f"{source}: {describe(secret, index)}", exc) from exc
    existing[i] = doc
    atomic_write(target, dump_documents(existing, fmt).encode("utf-8"))
    if before not in (None, fp) and fingerprint_hint(doc) is None:
        # the kept items are still on the old key: say so, or they are stranded at retirement
        print(
            f"secretsync: warning: {target}: the items not in the input stay sealed to key "
            f"{str(before)[:16]} (annotation {api.ANN_KEY_FINGERPRINT} removed); move them "
            "to this certificate with `secretsync reencrypt --private-key OLD-KEY`",
            file=sys.stderr,
        )
    return 0
