"""An Azure Key Vault (secrets API) server over HTTPS, in memory, for the sandbox.

Why our own: lowkey-vault, named in DESIGN.md, is not served by the Maven registry this
project can reach. This server answers the Key Vault REST API (7.x) the way its public
reference describes it, so `azure-keyvault-secrets`' `SecretClient` talks to it unchanged:
the 401 bearer challenge (any token is then accepted), versioned secrets with 32-hex version
ids, enabled/disabled versions (403 SecretDisabled), properties updates, paged listings with
`nextLink`, soft delete with recover and purge (409 while a name is deleted), and
`{"error": {"code", "message"}}` bodies. Keys and certificates are not implemented.

Run: `python -m sandbox.azure_emulator --port N --cert C --key K` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/'
    '00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'
)
_PAGE = 25


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.inner = status, code, inner


@dataclass
class _Version:
    id: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int


@dataclass
class _Secret:
    versions: list[_Version] = field(default_factory=list)  # oldest first
    deleted: int | None = None


class Vault:
    def __init__(self, base: str) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.secrets: dict[str, _Secret] = {}

    # --- representation
    def _attrs(self, v: _Version) -> dict[str, Any]:
        a: dict[str, Any] = {"enabled": v.enabled, "created": v.created, "updated": v.updated,
                             "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
        if v.nbf is not None:
            a["nbf"] = v.nbf
        if v.exp is not None:
            a["exp"] = v.exp
        return a

    def _bundle(
        self, name: str, v: _Version, *, value: bool, versioned: bool = True
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{self.base}/secrets/{name}" + (f"/{v.id}" if versioned else ""),
            "attributes": self._attrs(v),
            "tags": dict(v.tags),
        }
        if v.content_type is not None:
            out["contentType"] = v.content_type
        if value:
            out["value"] = v.value
        return out

    def _deleted(self, name: str, s: _Secret, *, value: bool) -> dict[str, Any]:
        out = self._bundle(name, s.versions[-1], value=value, versioned=value)
        deleted = s.deleted or 0
        out.update(recoveryId=f"{self.base}/deletedsecrets/{name}", deletedDate=deleted,
                   scheduledPurgeDate=deleted + 90 * 86400)
        return out

    # --- lookups
    def _live(self, name: str) -> _Secret:
        s = self.secrets.get(name)
        if s is None or s.deleted is not None:
            raise ApiError(404, "SecretNotFound",
                           f"A secret with (name/id) {name} was not found in this key vault.")
        return s

    def _gone(self, name: str) -> _Secret:
        s = self.secrets.get(name)
        if s is None or s.deleted is None:
            raise ApiError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return s

    def _version(self, name: str, version: str) -> _Version:
        s = self._live(name)
        if not version:
            return s.versions[-1]
        for v in s.versions:
            if v.id == version:
                return v
        raise ApiError(404, "SecretNotFound",
                       f"A secret with (name/id) {name}/{version} was not found in this key vault.")

    # --- operations
    def set(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _NAME.match(name):
            raise ApiError(400, "BadParameter", f"The request URI contains an invalid name: {name}")
        if not isinstance(body.get("value"), str):
            raise ApiError(400, "BadParameter", "Property 'value' must be a string.")
        attrs = body.get("attributes") or {}
        now = int(time.time())
        with self.lock:
            s = self.secrets.get(name)
            if s is not None and s.deleted is not None:
                raise ApiError(409, "Conflict",
                               f"Secret {name} is currently in a deleted but recoverable state, "
                               "and its name cannot be reused; in this state, the secret can only "
                               "be recovered or purged.")
            v = _Version(uuid.uuid4().hex, body["value"], body.get("contentType"),
                         dict(body.get("tags") or {}), bool(attrs.get("enabled", True)),
                         attrs.get("nbf"), attrs.get("exp"), now, now)
            self.secrets.setdefault(name, _Secret()).versions.append(v)
            return self._bundle(name, v, value=True)

    def get(self, name: str, version: str) -> dict[str, Any]:
        with self.lock:
            v = self._version(name, version)
            if not v.enabled:
                raise ApiError(403, "Forbidden",
                               "Operation get is not allowed on a disabled secret.",
                               inner="SecretDisabled")
            return self._bundle(name, v, value=True)

    def update(self, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            v = self._version(name, version)
            attrs = body.get("attributes") or {}
            if "enabled" in attrs:
                v.enabled = bool(attrs["enabled"])
            for k in ("nbf", "exp"):
                if k in attrs:
                    setattr(v, k, attrs[k])
            if "contentType" in body:
                v.content_type = body["contentType"]
            if "tags" in body:
                v.tags = dict(body["tags"] or {})
            v.updated = int(time.time())
            return self._bundle(name, v, value=False)

    def list_secrets(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self._bundle(n, s.versions[-1], value=False, versioned=False)
                    for n, s in sorted(self.secrets.items()) if s.deleted is None]

    def versions(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [self._bundle(name, v, value=False) for v in self._live(name).versions]

    def delete(self, name: str) -> dict[str, Any]:
        with self.lock:
            s = self._live(name)
            s.deleted = int(time.time())
            return self._deleted(name, s, value=False)

    def get_deleted(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self._deleted(name, self._gone(name), value=False)

    def list_deleted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self._deleted(n, s, value=False)
                    for n, s in sorted(self.secrets.items()) if s.deleted is not None]

    def purge(self, name: str) -> None:
        with self.lock:
            self._gone(name)
            del self.secrets[name]

    def recover(self, name: str) -> dict[str, Any]:
        with self.lock:
            s = self._gone(name)
            s.deleted = None
            return self._bundle(name, s.versions[-1], value=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-keyvault"
    timeout = 120  # seconds an idle keep-alive connection may hold its thread
    vault: Vault  # set on the subclass made by serve()
    tls: ssl.SSLContext

    def setup(self) -> None:
        # TLS handshake here, in the connection's own thread: a client that connects and stalls
        # cannot block the accept loop
        self.request.settimeout(self.timeout)
        self.request = self.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        # method and path only: request bodies (secret values) are never logged
        print(f"{self.command} {self.path.split('?')[0]} -> {args[1] if len(args) > 1 else ''}",
              flush=True)

    def _send(self, status: int, body: Any | None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._send(401, None, {"WWW-Authenticate": _CHALLENGE})
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if "api-version" not in query:
                raise ApiError(400, "BadParameter", "The 'api-version' parameter is required.")
            body = json.loads(raw) if raw else {}
            status, out = self._route(self.command, [p for p in url.path.split("/") if p],
                                      body, query)
        except ApiError as e:
            err: dict[str, Any] = {"code": e.code, "message": str(e)}
            if e.inner:
                err["innererror"] = {"code": e.inner}
            self._send(e.status, {"error": err})
            return
        except ValueError:
            self._send(400, {"error": {"code": "BadParameter", "message": "invalid JSON body"}})
            return
        self._send(status, out)

    def _page(self, items: list[dict[str, Any]], path: str,
              query: dict[str, list[str]]) -> dict[str, Any]:
        size = int(query.get("maxresults", [str(_PAGE)])[0] or _PAGE)
        start = int(query.get("$skiptoken", ["0"])[0] or 0)
        api = query["api-version"][0]
        nxt = None
        if start + size < len(items):
            nxt = (f"{self.vault.base}{path}?api-version={api}&maxresults={size}"
                   f"&$skiptoken={start + size}")
        return {"value": items[start:start + size], "nextLink": nxt}

    def _route(self, method: str, parts: list[str], body: dict[str, Any],
               query: dict[str, list[str]]) -> tuple[int, Any]:
        v = self.vault
        match method, parts:
            case "GET", ["secrets"]:
                return 200, self._page(v.list_secrets(), "/secrets", query)
            case "PUT", ["secrets", name]:
                return 200, v.set(name, body)
            case "GET", ["secrets", name, "versions"]:
                return 200, self._page(v.versions(name), f"/secrets/{name}/versions", query)
            case "GET", ["secrets", name, *ver] if len(ver) <= 1:
                return 200, v.get(name, ver[0] if ver else "")
            case "PATCH", ["secrets", name, *ver] if len(ver) <= 1:
                return 200, v.update(name, ver[0] if ver else "", body)
            case "DELETE", ["secrets", name]:
                return 200, v.delete(name)
            case "GET", ["deletedsecrets"]:
                return 200, self._page(v.list_deleted(), "/deletedsecrets", query)
            case "GET", ["deletedsecrets", name]:
                return 200, v.get_deleted(name)
            case "DELETE", ["deletedsecrets", name]:
                v.purge(name)
                return 204, None
            case "POST", ["deletedsecrets", name, "recover"]:
                return 200, v.recover(name)
        raise ApiError(404, "NotFound", f"{method} /{'/'.join(parts)} is not supported here")

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _handle


def serve(port: int, cert: str, key: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    vault = Vault(f"https://{host}:{port}")
    handler = type("Handler", (_Handler,), {"vault": vault, "tls": ctx})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    print(f"azure key vault emulator listening on https://{host}:{port}", flush=True)
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    serve(args.port, args.cert, args.key, args.host).serve_forever()


if __name__ == "__main__":
    main()
