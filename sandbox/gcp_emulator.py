"""A GCP Secret Manager v1 server over plaintext gRPC, in memory, for the sandbox.

Why our own: the Go emulator named in DESIGN.md is not served by the Go module proxy this
project can reach. This server speaks the real wire protocol (the request/response messages
of `google-cloud-secret-manager`, service `google.cloud.secretmanager.v1.SecretManagerService`)
so the official Python client talks to it unchanged over an insecure channel. It implements
the secret and version life cycle the way the public API reference describes it: `latest`
alias, ENABLED/DISABLED/DESTROYED states, FAILED_PRECONDITION on disabled access, CRC32C
payload checksums, etags, labels/annotations, list paging and simple `filter` terms. IAM and
rotation RPCs answer UNIMPLEMENTED. The sandbox runs it anonymous over plaintext; `serve()` can
also run it over TLS, accepting only the bearer tokens a test's token service issued
(UNAUTHENTICATED otherwise), for the credential flows that never send tokens without TLS.

Run: `python -m sandbox.gcp_emulator --port N` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.cloud.secretmanager_v1 import types as t
from google.protobuf import empty_pb2, timestamp_pb2

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PARENT = re.compile(r"^projects/[^/]+(/locations/[^/]+)?$")


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


@dataclass
class _Version:
    number: int
    data: bytes
    created: timestamp_pb2.Timestamp
    state: int = t.SecretVersion.State.ENABLED
    destroyed: timestamp_pb2.Timestamp | None = None
    etag: str = field(default_factory=lambda: f'"{uuid.uuid4().hex[:12]}"')


@dataclass
class _Secret:
    name: str
    proto: Any  # t.Secret
    versions: dict[int, _Version] = field(default_factory=dict)


def _etag() -> str:
    return f'"{uuid.uuid4().hex[:12]}"'


class Store:
    """The state and the semantics; the gRPC layer below only (de)serialises."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, _Secret] = {}

    # --- helpers
    def _secret(self, name: str) -> _Secret:
        s = self.secrets.get(name)
        if s is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret [{name}] not found.")
        return s

    def _version(self, name: str) -> tuple[_Secret, _Version]:
        secret_name, sep, ver = name.rpartition("/versions/")
        if not sep:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid version name [{name}]")
        s = self._secret(secret_name)
        if ver == "latest":
            if not s.versions:
                raise RpcError(grpc.StatusCode.NOT_FOUND,
                               f"Secret [{secret_name}] has no versions.")
            return s, s.versions[max(s.versions)]
        alias = dict(s.proto.version_aliases)
        if ver in alias:
            ver = str(alias[ver])
        if not ver.isdigit() or int(ver) not in s.versions:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")
        return s, s.versions[int(ver)]

    @staticmethod
    def _version_proto(s: _Secret, v: _Version) -> Any:
        return t.SecretVersion(
            name=f"{s.name}/versions/{v.number}", create_time=v.created, state=v.state,
            destroy_time=v.destroyed, etag=v.etag,
            client_specified_payload_checksum=True,
        )

    @staticmethod
    def _page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
        try:
            start = int(token) if token else 0
        except ValueError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "invalid page token") from exc
        size = size if 0 < size <= 25000 else 25000
        page = items[start:start + size]
        nxt = str(start + size) if start + size < len(items) else ""
        return page, nxt

    # --- secrets
    def create_secret(self, req: Any) -> Any:
        if not _PARENT.match(req.parent):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid parent [{req.parent}]")
        if not _ID.match(req.secret_id):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid secret_id [{req.secret_id}]")
        name = f"{req.parent}/secrets/{req.secret_id}"
        with self.lock:
            if name in self.secrets:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
            proto = t.Secret(req.secret)
            proto.name = name
            proto.create_time = _now()
            proto.etag = _etag()
            if not proto.replication:
                proto.replication = t.Replication(automatic=t.Replication.Automatic())
            self.secrets[name] = _Secret(name, proto)
            return proto

    def get_secret(self, req: Any) -> Any:
        with self.lock:
            return self._secret(req.name).proto

    def update_secret(self, req: Any) -> Any:
        with self.lock:
            s = self._secret(req.secret.name)
            if req.secret.etag and req.secret.etag != s.proto.etag:
                raise RpcError(grpc.StatusCode.ABORTED, "etag mismatch")
            paths = list(req.update_mask.paths)
            if not paths:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "update_mask is required")
            for p in paths:
                if p not in ("labels", "annotations", "version_aliases", "expire_time", "ttl",
                             "topics", "rotation", "version_destroy_ttl"):
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot update field [{p}]")
                setattr(s.proto, p, getattr(req.secret, p))
            s.proto.etag = _etag()
            return s.proto

    def delete_secret(self, req: Any) -> Any:
        with self.lock:
            s = self._secret(req.name)
            if req.etag and req.etag != s.proto.etag:
                raise RpcError(grpc.StatusCode.ABORTED, "etag mismatch")
            del self.secrets[req.name]
            return empty_pb2.Empty()

    def list_secrets(self, req: Any) -> Any:
        match = _filter(req.filter)
        with self.lock:
            items = sorted(
                (s.proto for n, s in self.secrets.items()
                 if n.startswith(req.parent + "/secrets/") and match(s.proto)),
                key=lambda p: p.name,
            )
        page, nxt = self._page(items, req.page_size, req.page_token)
        return t.ListSecretsResponse(secrets=page, next_page_token=nxt, total_size=len(items))

    # --- versions
    def add_version(self, req: Any) -> Any:
        data = bytes(req.payload.data)
        if "data_crc32c" in req.payload and req.payload.data_crc32c != crc32c(data):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "data_crc32c does not match data")
        if len(data) > 64 * 1024:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "payload larger than 64 KiB")
        with self.lock:
            s = self._secret(req.parent)
            number = max(s.versions, default=0) + 1
            v = _Version(number, data, _now())
            s.versions[number] = v
            return self._version_proto(s, v)

    def get_version(self, req: Any) -> Any:
        with self.lock:
            return self._version_proto(*self._version(req.name))

    def access_version(self, req: Any) -> Any:
        with self.lock:
            s, v = self._version(req.name)
            if v.state != t.SecretVersion.State.ENABLED:
                state = t.SecretVersion.State(v.state).name
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Secret Version [{s.name}/versions/{v.number}] is in {state}"
                               " state.")
            return t.AccessSecretVersionResponse(
                name=f"{s.name}/versions/{v.number}",
                payload=t.SecretPayload(data=v.data, data_crc32c=crc32c(v.data)),
            )

    def list_versions(self, req: Any) -> Any:
        with self.lock:
            s = self._secret(req.parent)
            items = [self._version_proto(s, s.versions[n])
                     for n in sorted(s.versions, reverse=True)]
        if req.filter:
            m = re.fullmatch(r"state\s*[:=]\s*(\w+)", req.filter.strip())
            if not m:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"unsupported filter {req.filter!r}")
            items = [i for i in items if t.SecretVersion.State(i.state).name == m.group(1).upper()]
        page, nxt = self._page(items, req.page_size, req.page_token)
        return t.ListSecretVersionsResponse(versions=page, next_page_token=nxt,
                                            total_size=len(items))

    def _set_state(self, req: Any, state: int) -> Any:
        with self.lock:
            s, v = self._version(req.name)
            if req.etag and req.etag != v.etag:
                raise RpcError(grpc.StatusCode.ABORTED, "etag mismatch")
            if v.state == t.SecretVersion.State.DESTROYED:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "version is destroyed")
            v.state = state
            v.etag = _etag()
            if state == t.SecretVersion.State.DESTROYED:
                v.data = b""
                v.destroyed = _now()
            return self._version_proto(s, v)

    def disable(self, req: Any) -> Any:
        return self._set_state(req, t.SecretVersion.State.DISABLED)

    def enable(self, req: Any) -> Any:
        return self._set_state(req, t.SecretVersion.State.ENABLED)

    def destroy(self, req: Any) -> Any:
        return self._set_state(req, t.SecretVersion.State.DESTROYED)


def _label_check(key: str, value: str | None) -> Callable[[Any], bool]:
    return lambda s: key in s.labels if value is None else s.labels.get(key) == value


def _name_check(part: str) -> Callable[[Any], bool]:
    return lambda s: part in s.name.rsplit("/", 1)[1]


def _filter(expr: str) -> Callable[[Any], bool]:
    """AND of terms: `labels.K=V`, `labels.K:V`, `labels.K:*`, `name:SUBSTR`."""
    terms = [x for x in re.split(r"\s+(?:AND\s+)?", expr.strip()) if x and x != "AND"]
    checks: list[Callable[[Any], bool]] = []
    for term in terms:
        m = re.fullmatch(r"labels\.([\w-]+)\s*([:=])\s*\"?([^\"]*)\"?", term)
        if m:
            key, op, val = m.groups()
            checks.append(_label_check(key, None if (val == "*" and op == ":") else val))
            continue
        m = re.fullmatch(r"name\s*:\s*\"?([^\"]*)\"?", term)
        if m:
            checks.append(_name_check(m.group(1)))
            continue
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported filter term {term!r}")
    return lambda s: all(c(s) for c in checks)


Authorize = Callable[[str | None], "grpc.StatusCode | None"]
"""May this bearer token (the ``authorization`` metadata without ``Bearer``; None when absent)
call? None = yes, else the status to refuse with. Google APIs answer UNAUTHENTICATED for a
missing, expired or unknown token and PERMISSION_DENIED for a valid one without the permission:
https://cloud.google.com/apis/design/errors#handling_errors"""


def _bearer(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == "authorization" and str(value).startswith("Bearer "):
            return str(value).removeprefix("Bearer ")
    return None


def _handler(
    fn: Callable[[Any], Any], req_type: Any, resp_type: Any, authorize: Authorize | None = None
) -> grpc.RpcMethodHandler:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        refused = authorize(_bearer(context)) if authorize is not None else None
        if refused is not None:
            context.abort(refused, "Request had invalid authentication credentials."
                          if refused == grpc.StatusCode.UNAUTHENTICATED
                          else "The caller does not have permission")
        try:
            return fn(request)
        except RpcError as exc:
            context.abort(exc.code, str(exc))

    serialize = (lambda m: m.SerializeToString()) if resp_type is None else resp_type.serialize
    return grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=req_type.deserialize, response_serializer=serialize,
    )


def handlers(store: Store, authorize: Authorize | None = None) -> grpc.GenericRpcHandler:
    table = {
        "CreateSecret": (store.create_secret, t.CreateSecretRequest, t.Secret),
        "GetSecret": (store.get_secret, t.GetSecretRequest, t.Secret),
        "UpdateSecret": (store.update_secret, t.UpdateSecretRequest, t.Secret),
        "DeleteSecret": (store.delete_secret, t.DeleteSecretRequest, None),
        "ListSecrets": (store.list_secrets, t.ListSecretsRequest, t.ListSecretsResponse),
        "AddSecretVersion": (store.add_version, t.AddSecretVersionRequest, t.SecretVersion),
        "GetSecretVersion": (store.get_version, t.GetSecretVersionRequest, t.SecretVersion),
        "AccessSecretVersion": (store.access_version, t.AccessSecretVersionRequest,
                                t.AccessSecretVersionResponse),
        "ListSecretVersions": (store.list_versions, t.ListSecretVersionsRequest,
                               t.ListSecretVersionsResponse),
        "DisableSecretVersion": (store.disable, t.DisableSecretVersionRequest, t.SecretVersion),
        "EnableSecretVersion": (store.enable, t.EnableSecretVersionRequest, t.SecretVersion),
        "DestroySecretVersion": (store.destroy, t.DestroySecretVersionRequest, t.SecretVersion),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE, {name: _handler(*spec, authorize) for name, spec in table.items()}
    )


def serve(
    port: int,
    host: str = "127.0.0.1",
    *,
    tls: tuple[bytes, bytes] | None = None,
    authorize: Authorize | None = None,
    store: Store | None = None,
) -> grpc.Server:
    """Serve ``store`` (a new one by default). The sandbox runs it plaintext and anonymous;
    tests of credential flows run one in-process with ``tls`` (certificate chain PEM, key
    PEM) and ``authorize`` (which bearer tokens are accepted)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handlers(store or Store(), authorize),))
    if tls is not None:
        creds = grpc.ssl_server_credentials([(tls[1], tls[0])])
        bound = server.add_secure_port(f"{host}:{port}", creds)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    server.start()
    print(f"gcp secret manager emulator listening on {host}:{port}", flush=True)
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    serve(args.port, args.host).wait_for_termination()


if __name__ == "__main__":
    main()
