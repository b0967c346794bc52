"""``secretsync validate``: ask the controller whether it can unseal these SealedSecrets.

Each SealedSecret in the given files is sent to the controller's ``/v1/verify`` (directly with
``--controller-url``, else through the API server's service proxy); one line per object says
``ok`` or the condition reason the controller would set. Exit 1 if any would fail.
"""

from __future__ import annotations

import argparse
import sys

from secretsync.cli._common import add_cluster_arguments
from secretsync.cli.cluster_cmds import ControllerClient, add_controller_arguments, sealed_documents
from secretsync.documents import describe
from secretsync.errors import SecretSyncError
from secretsync.sealing import is_sealed_secret


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="SealedSecret files")
    add_controller_arguments(p)
    add_cluster_arguments(p)


def run(args: argparse.Namespace) -> int:
    from secretsync.cli.main import error

    client = ControllerClient(args)
    bad = 0
    seen = 0
    for path in args.files:
        try:
            _, docs, _ = sealed_documents(path)
        except (SecretSyncError, OSError) as exc:
            error(f"{path}: {getattr(exc, 'message', None) or exc}")
            bad += 1
            continue
        for i, doc in enumerate(docs):
            if not is_sealed_secret(doc):
                continue
            seen += 1
            status, answer = client.post("/v1/verify", doc)
            what = f"{path}: {describe(doc, i + 1)}"
            if status == 200:
                print(f"{what}: ok")
            else:
                bad += 1
                print(f"{what}: {answer.get('reason')}: {answer.get('message')}")
    if seen == 0 and bad == 0:
        return error("no SealedSecret found in the given files")
    if bad:
        print(f"secretsync: {bad} SealedSecret(s) would not unseal", file=sys.stderr)
        return 1
    return 0
