"""The controller's HTTP endpoints (aiohttp): metrics, health, certificate, verify, rotate.

- ``/metrics``: Prometheus text format (default registry).
- ``/healthz``: the process is alive. ``/readyz``: 200 once keys are loaded and kopf is
  watching, or while standing by for the leadership Lease (a standby is healthy).
- ``/v1/cert.pem``: the newest certificate (same as the ConfigMap).
- ``/v1/verify`` (POST a SealedSecret, YAML or JSON): 200 when this controller can unseal it,
  409 with the condition reason otherwise. Never returns values.
- ``/v1/rotate`` (POST a SealedSecret): the same object re-encrypted to the newest key --
  ciphertext only, the plaintext never leaves the process.

These are Bitnami's endpoint names, so ``kubeseal --validate/--re-encrypt`` style tooling and
``secretsync validate`` / ``secretsync reencrypt --cluster`` work against them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from secretsync.controller import metrics
from secretsync.controller.keyring import cert_pem
from secretsync.controller.runtime import Runtime
from secretsync.documents import load_documents
from secretsync.errors import SecretSyncError
from secretsync.reconcile import sealed as rs

log = logging.getLogger("secretsync.http")

MAX_BODY = 2 * 1024 * 1024


def _load_one(raw: bytes) -> dict[str, Any]:
    docs, _ = load_documents(raw, "request body")
    if len(docs) != 1:
        raise SecretSyncError("send exactly one SealedSecret", reason="InvalidSpec")
    return docs[0]


def _verify(rt: Runtime, doc: dict[str, Any]) -> None:
    rs.unseal(doc, rt.keys.registry)


def _rotate(rt: Runtime, doc: dict[str, Any]) -> dict[str, Any]:
    from secretsync.sealing import reseal

    prepared = rs.prepare(doc)
    values: dict[str, bytes] = {}
    for name in prepared.items:
        result = rs.decrypt_one(rt.keys.registry, prepared, name)
        if not isinstance(result, bytes):
            raise rs.explain_failure(rt.keys.registry, prepared, name, result)
        values[name] = result
    newest = rt.keys.registry.newest()
    return reseal(doc, values, newest.public_key, newest.fingerprint)


def make_app(rt: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def metrics_view(_: web.Request) -> web.Response:
        metrics.KEY_COUNT.set(len(rt.keys.registry))
        metrics.IS_LEADER.set(1 if rt.is_leader else 0)
        return web.Response(body=generate_latest(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if not rt.is_leader:
            return web.Response(text="standby\n")
        if rt.operator_ready and len(rt.keys.registry) > 0:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def cert(_: web.Request) -> web.Response:
        if len(rt.keys.registry) == 0:
            return web.Response(status=503, text="no key loaded yet\n")
        text = cert_pem(rt.keys.registry.newest())
        return web.Response(text=text, content_type="application/x-pem-file")

    async def _with_doc(request: web.Request, fn: Any) -> web.Response:
        if len(rt.keys.registry) == 0:
            return web.json_response({"reason": "NoKeys", "message": "no key loaded yet"},
                                     status=503)
        try:
            doc = _load_one(await request.read())
            result = await asyncio.get_running_loop().run_in_executor(rt.pool, fn, rt, doc)
        except SecretSyncError as exc:
            status = 400 if exc.reason == "InvalidSpec" else 409
            return web.json_response({"reason": exc.reason, "message": exc.message},
                                     status=status)
        if result is None:
            return web.json_response({"reason": rs.REASON_UNSEALED, "message": "ok"})
        return web.Response(text=json.dumps(result), content_type="application/json")

    async def verify(request: web.Request) -> web.Response:
        return await _with_doc(request, _verify)

    async def rotate(request: web.Request) -> web.Response:
        return await _with_doc(request, _rotate)

    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/cert.pem", cert)
    app.router.add_post("/v1/verify", verify)
    app.router.add_post("/v1/rotate", rotate)
    return app


async def start(rt: Runtime, sock: socket.socket) -> web.AppRunner:
    """Serve the endpoints on ``sock`` (bound by the caller, so a busy port fails before
    this module is even imported)."""
    runner = web.AppRunner(make_app(rt), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()[:2]
    log.info("HTTP endpoints on %s:%d (/metrics /healthz /readyz /v1/cert.pem)",
             f"[{host}]" if ":" in host else host, port)
    return runner
