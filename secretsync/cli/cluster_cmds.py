"""Talking to a running controller's HTTP endpoints (``/v1/verify``, ``/v1/rotate``).

``--controller-url`` reaches it directly (a port-forward, or the Service from inside the
cluster); otherwise requests go through the API server's service proxy
(``/api/v1/namespaces/<ns>/services/http:<name>:http/proxy/...``) with the kubeconfig's
credentials, as ``kubeseal --validate/--re-encrypt`` do. Shared by ``secretsync validate`` and
``secretsync reencrypt --cluster``; only ciphertext is ever sent or received.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from secretsync.cli import _deadline
from secretsync.cli._common import atomic_write
from secretsync.documents import Format, describe, dump_documents, load_documents, sniff_format
from secretsync.errors import KubeError, SecretSyncError
from secretsync.sealing import is_sealed_secret


class ControllerError(SecretSyncError):
    reason = "ControllerUnreachable"


def add_controller_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller-url", metavar="URL",
                   help="the controller's HTTP address (default: through the API server's "
                        "service proxy)")


class ControllerClient:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url: str | None = getattr(args, "controller_url", None)
        self.args = args
        self._kube: Any = None
        self.timeout = _deadline.timeout_of(args)

    def post(self, path: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one SealedSecret, within ``--timeout`` seconds in
        total (a controller or API server that accepts and never answers, or trickles)."""
        body = json.dumps(doc).encode()
        if self.url:
            where = f"POST {str(self.url).rstrip('/')}{path}"
            return _deadline.call(lambda: self._post_direct(path, body), self.timeout, where)
        ns, name = self.args.controller_namespace, self.args.controller_name
        return _deadline.call(
            lambda: self._post_proxy(path, doc),
            self.timeout,
            f"POST {path} to Service {ns}/{name} via the API server",
        )

    def _post_direct(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        import urllib.error
        import urllib.request

        url = str(self.url).rstrip("/") + path
        if not url.startswith(("http://", "https://")):
            raise ControllerError(f"--controller-url must be http:// or https://, not {url!r}")
        req = urllib.request.Request(url, data=body,  # noqa: S310 (scheme checked above)
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (user's URL)
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {"reason": f"HTTP{exc.code}", "message": str(exc.reason)}
        except (urllib.error.URLError, OSError) as exc:
            raise ControllerError(f"{url}: {getattr(exc, 'reason', exc)}") from None

    def _post_proxy(self, path: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The controller's own answers (200, or 409/400/503 with its reason) are returned as
        they are, exactly as on the direct path; only the API server's refusals raise."""
        from secretsync.errors import KubeForbidden
        from secretsync.kube import Kube

        if self._kube is None:
            self._kube = Kube.from_config(self.args.kubeconfig, self.args.context)
        ns, name = self.args.controller_namespace, self.args.controller_name
        try:
            answer: tuple[int, dict[str, Any]] = self._kube.proxy_service(
                "POST", ns, name, path, doc)
            return answer
        except KubeForbidden as exc:
            raise ControllerError(
                f"{exc.message} (reaching the controller through the API server needs 'create' "
                f"on services/proxy named http:{name}:http in namespace {ns}; "
                "or pass --controller-url)"
            ) from None
        except KubeError as exc:
            raise ControllerError(
                f"{exc.message} (check --controller-namespace/--controller-name, "
                "or pass --controller-url)") from None


def sealed_documents(path: str) -> tuple[bytes, list[dict[str, Any]], Format]:
    with open(path, "rb") as fh:
        data = fh.read()
    docs, fmt = load_documents(data, path, expand_lists=False)
    return data, docs, fmt


def reencrypt_cluster(args: argparse.Namespace) -> int:
    """``reencrypt --cluster``: the controller re-encrypts each SealedSecret to its newest key
    (the private keys never leave the cluster); files are rewritten atomically, only when
    something changed, and left untouched when any of their objects fails."""
    from secretsync.cli._files import discover
    from secretsync.cli.main import error

    client = ControllerClient(args)
    files, missing = discover(args.paths)
    failures = [f"{m.path}: {m.error}" for m in missing]
    rotated = 0
    for path in files:
        try:
            data, docs, fmt = sealed_documents(path)
        except (SecretSyncError, OSError) as exc:
            failures.append(f"{path}: {getattr(exc, 'message', None) or exc}")
            continue
        changed, failed = 0, False
        for i, doc in enumerate(docs):
            if not is_sealed_secret(doc):
                continue
            status, answer = client.post("/v1/rotate", doc)
            if status != 200:
                failures.append(f"{path}: {describe(doc, i + 1)}: {answer.get('reason')}: "
                                f"{answer.get('message')}")
                failed = True
                break
            if answer != doc:
                docs[i] = answer
                changed += 1
        if failed or not changed:
            continue
        rotated += changed
        if not args.dry_run:
            text = data.decode("utf-8-sig")
            atomic_write(path, dump_documents(docs, fmt or sniff_format(text)).encode())
    if not args.quiet:
        verb = "would re-encrypt" if args.dry_run else "re-encrypted"
        print(f"secretsync: {verb} {rotated} SealedSecret(s) via the controller; "
              f"{len(files)} file(s) scanned", file=sys.stderr)
    for f in failures:
        error(f)
    return 1 if failures else 0
