"""AWS Secrets Manager and SSM Parameter Store backend (``spec.provider.aws``).

Why this module exists: it turns an ``external-secrets.io/v1``-shaped ``aws`` provider block
into one pair of botocore clients per store (the secrets service and STS, built once, reused,
closed on cleanup), runs every call off the event loop, and translates every botocore error
into the contract's ``SecretNotFound`` / ``BackendAuthError`` / ``BackendUnavailable`` with a
message naming the secret and the AWS error code, never the value or the response body.

Store fields::

    aws:
      service: SecretsManager | ParameterStore   # default SecretsManager
      region: eu-west-1                          # required
      role: arn:aws:iam::123:role/reader          # optional: AssumeRole via STS
      externalID: ...                             # optional, with role
      endpoint: http://127.0.0.1:5000             # our addition: VPC endpoint / other partition
                                                  # / sandbox; used for the service and STS
      auth:                                       # optional: no auth block = default chain
        secretRef:                                #   (env, web identity / IRSA, instance role)
          accessKeyIDSecretRef: {name, key, namespace}
          secretAccessKeySecretRef: {name, key, namespace}
          sessionTokenSecretRef: {name, key, namespace}   # optional
        jwt:                                      # or: per-store IRSA. A TokenRequest token of
          serviceAccountRef: {name, namespace, audiences}  # this ServiceAccount is exchanged
                                                  # for ``role`` (required here: unlike ESO we
                                                  # do not read the SA's role annotation)

Versions (Secrets Manager): no version = ``AWSCURRENT``; ``uuid/<id>`` or a value shaped like
a UUID is a ``VersionId``; anything else (``AWSCURRENT``, ``AWSPREVIOUS``, a custom label) is
a ``VersionStage``. Versions (Parameter Store): a version number or label, sent as the
``name:selector`` form. ``find.path`` is a name prefix for Secrets Manager; for Parameter Store
a path starting with ``/`` is a hierarchy read recursively, anything else a name prefix.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    AssumeRoleWithWebIdentityCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.session import Session

from secretsync.backends._common import (
    cap_loggers,
    compile_regexp,
    opt_map,
    opt_str,
    req_str,
    resolve_ref_str,
    store_label,
    tags_match,
)
from secretsync.backends.base import Backend, FindQuery, RemoteRef, StoreContext, json_map
from secretsync.backends.base import select_property as _select_property
from secretsync.backends.metrics import track
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

T = TypeVar("T")

# botocore logs every response body (SecretString, parameter values) at DEBUG.
cap_loggers({"botocore": logging.INFO, "boto3": logging.INFO})

SECRETS_MANAGER = "SecretsManager"
PARAMETER_STORE = "ParameterStore"

_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "ParameterVersionLabelNotFound",
    }
)
_AUTH = frozenset(
    {
        "UnrecognizedClientException",
        "AccessDeniedException",
        "AccessDenied",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AuthFailure",
        "UnauthorizedOperation",
        "DecryptionFailure",
        "KMSAccessDeniedException",
        "InvalidKeyId",
        "RegionDisabledException",
    }
)
_THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "LimitExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServiceError",
        "InternalServiceErrorException",
        "InternalFailure",
        "InternalServerError",
    }
)

# botocore retries throttling and 5xx with exponential backoff and jitter ("standard" mode)
# before we see the error; what is left becomes BackendUnavailable and the engine backs off.
_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=16,
    user_agent_extra="secretsync",
)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SESSION_NAME_BAD = re.compile(r"[^\w+=,.@-]")


def sm_version_args(version: str | None) -> dict[str, str]:
    """GetSecretValue arguments for ``remoteRef.version`` (see the module docstring)."""
    if not version:
        return {}
    if version.startswith("uuid/"):
        return {"VersionId": version[len("uuid/") :]}
    if _UUID.match(version):
        return {"VersionId": version}
    return {"VersionStage": version}


def ssm_name(key: str, version: str | None) -> str:
    """Parameter name with an optional ``:version`` / ``:label`` selector."""
    return f"{key}:{version}" if version else key


def role_session_name(store_name: str) -> str:
    """A RoleSessionName AWS accepts (2-64 chars of ``[\\w+=,.@-]``) naming the store."""
    return _SESSION_NAME_BAD.sub("-", f"secretsync-{store_name}")[:64]


def translate(exc: Exception, what: str) -> BackendError:
    """Map a botocore exception to the contract's error types. ``what`` names the secret or
    the store; the message carries the AWS error code, never the response body."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND:
            return SecretNotFound(f"{what}: not found in AWS ({code})")
        if code in _AUTH or status in (401, 403):
            return BackendAuthError(
                f"{what}: AWS refused access ({code}); check the store credentials, role and "
                "IAM/KMS permissions"
            )
        if code in _THROTTLED or status == 429 or status >= 500:
            return BackendUnavailable(
                f"{what}: AWS is throttling or unavailable ({code}); will retry"
            )
        if code == "InvalidRequestException":
            # e.g. the secret is scheduled for deletion
            return SecretNotFound(
                f"{what}: AWS rejected the request ({code}); is it being deleted?"
            )
        return BackendError(f"{what}: AWS rejected the request ({code})")
    if isinstance(exc, NoRegionError):
        return StoreInvalid(f"{what}: no AWS region; set spec.provider.aws.region")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return BackendAuthError(
            f"{what}: no usable AWS credentials ({type(exc).__name__}); set "
            "spec.provider.aws.auth.secretRef or provide the default chain (IRSA, instance role)"
        )
    if isinstance(
        exc,
        EndpointConnectionError
        | BotoConnectionError
        | HTTPClientError
        | ReadTimeoutError
        | ConnectionClosedError,
    ):
        return BackendUnavailable(f"{what}: cannot reach AWS ({type(exc).__name__}); will retry")
    if isinstance(exc, ParamValidationError):
        return BackendError(f"{what}: invalid request parameters for AWS")
    return BackendError(f"{what}: AWS call failed ({type(exc).__name__})")


class _FixedProvider(CredentialProvider):  # type: ignore[misc]
    """Hands a prepared (assumed-role, auto-refreshing) credentials object to a session."""

    METHOD = "assume-role"
    CANONICAL_NAME = "secretsync-assume-role"

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials


@dataclass(frozen=True)
class AwsSettings:
    """The parsed ``aws`` provider block (credentials already resolved)."""

    service: str
    region: str
    endpoint: str | None
    role: str | None
    external_id: str | None
    session_name: str
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    # auth.jwt: returns a fresh ServiceAccount token; called from botocore's worker thread
    web_identity_token: Callable[[], str] | None = None


async def parse_settings(ctx: StoreContext) -> AwsSettings:
    """Validate the provider block and resolve the referenced credentials."""
    p = ctx.provider
    base = "spec.provider.aws"
    service = opt_str(ctx, p, "service", f"{base}.service") or SECRETS_MANAGER
    if service not in (SECRETS_MANAGER, PARAMETER_STORE):
        raise StoreInvalid(
            f"{store_label(ctx)}: {base}.service must be {SECRETS_MANAGER} or {PARAMETER_STORE}"
        )
    region = req_str(ctx, p, "region", f"{base}.region")
    endpoint = opt_str(ctx, p, "endpoint", f"{base}.endpoint")
    role = opt_str(ctx, p, "role", f"{base}.role")
    external_id = opt_str(ctx, p, "externalID", f"{base}.externalID")
    auth = opt_map(ctx, p, "auth", f"{base}.auth")
    settings = AwsSettings(
        service=service,
        region=region,
        endpoint=endpoint,
        role=role,
        external_id=external_id,
        session_name=role_session_name(ctx.store_name),
    )
    jwt = opt_map(ctx, auth, "jwt", f"{base}.auth.jwt")
    if jwt:
        return replace(settings, web_identity_token=_token_loader(ctx, jwt, role))
    secret_ref = opt_map(ctx, auth, "secretRef", f"{base}.auth.secretRef")
    if not secret_ref:
        return settings
    sr = f"{base}.auth.secretRef"
    for field_name in ("accessKeyIDSecretRef", "secretAccessKeySecretRef"):
        if not secret_ref.get(field_name):
            raise StoreInvalid(f"{store_label(ctx)}: {sr}.{field_name} is required")
    akid = await resolve_ref_str(
        ctx, secret_ref["accessKeyIDSecretRef"], f"{sr}.accessKeyIDSecretRef"
    )
    secret = await resolve_ref_str(
        ctx, secret_ref["secretAccessKeySecretRef"], f"{sr}.secretAccessKeySecretRef"
    )
    token = None
    if secret_ref.get("sessionTokenSecretRef"):
        token = await resolve_ref_str(
            ctx, secret_ref["sessionTokenSecretRef"], f"{sr}.sessionTokenSecretRef"
        )
    return replace(settings, access_key_id=akid, secret_access_key=secret, session_token=token)


def _token_loader(ctx: StoreContext, jwt: Mapping[str, Any], role: str | None) -> Callable[[], str]:
    """A blocking token source for botocore's web-identity fetcher: it runs in a worker
    thread, so it hands the async TokenRequest to the controller's event loop and waits."""
    base = "spec.provider.aws.auth.jwt"
    label = store_label(ctx)
    ref = opt_map(ctx, jwt, "serviceAccountRef", f"{base}.serviceAccountRef")
    name = req_str(ctx, ref, "name", f"{base}.serviceAccountRef.name")
    namespace = opt_str(ctx, ref, "namespace", f"{base}.serviceAccountRef.namespace")
    namespace = namespace or ctx.namespace
    if ctx.store_kind != "ClusterSecretStore" and namespace != ctx.namespace:
        raise StoreInvalid(
            f"{label}: {base}.serviceAccountRef.namespace {namespace!r} is not allowed; a "
            "SecretStore may only use ServiceAccounts in its own namespace"
        )
    audiences = [str(a) for a in ref.get("audiences") or []] or ["sts.amazonaws.com"]
    if not role:
        raise StoreInvalid(f"{label}: spec.provider.aws.role is required with auth.jwt")
    request_token = ctx.request_token
    if request_token is None:
        raise StoreInvalid(f"{label}: auth.jwt needs ServiceAccount tokens, unavailable here")
    loop = asyncio.get_running_loop()

    async def fetch() -> str:
        return await request_token(namespace, name, audiences)

    def load() -> str:
        return asyncio.run_coroutine_threadsafe(fetch(), loop).result(timeout=30)

    return load


def build_clients(s: AwsSettings) -> tuple[Any, Any]:
    """(secrets service client, STS client). Blocking: botocore loads its models here."""
    session = Session()

    def sts_creator(service: str, **kwargs: Any) -> Any:
        config = _CONFIG.merge(kwargs.pop("config")) if "config" in kwargs else _CONFIG
        return session.create_client(
            service, region_name=s.region, endpoint_url=s.endpoint, config=config, **kwargs
        )

    if s.access_key_id is not None:
        session.set_credentials(s.access_key_id, s.secret_access_key, s.session_token)
    if s.role:
        extra: dict[str, Any] = {"RoleSessionName": s.session_name}
        if s.external_id:
            extra["ExternalId"] = s.external_id
        fetcher: Any
        if s.web_identity_token is not None:
            fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
                client_creator=sts_creator,
                web_identity_token_loader=s.web_identity_token,
                role_arn=s.role,
                extra_args={"RoleSessionName": s.session_name},
            )
        else:
            source = session.get_credentials()
            if source is None:
                raise NoCredentialsError()
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=sts_creator,
                source_credentials=source,
                role_arn=s.role,
                extra_args=extra,
            )
        assumed = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role"
        )
        session = Session()
        session.register_component(
            "credential_provider", CredentialResolver(providers=[_FixedProvider(assumed)])
        )
    service = "secretsmanager" if s.service == SECRETS_MANAGER else "ssm"
    client = session.create_client(
        service, region_name=s.region, endpoint_url=s.endpoint, config=_CONFIG
    )
    sts = session.create_client(
        "sts", region_name=s.region, endpoint_url=s.endpoint, config=_CONFIG
    )
    return client, sts


class AwsBackend:
    """A connected store: Secrets Manager or Parameter Store, per ``service``."""

    def __init__(self, settings: AwsSettings, client: Any, sts: Any, label: str) -> None:
        self._s = settings
        self._client = client
        self._sts = sts
        self._label = label
        self._sm = settings.service == SECRETS_MANAGER
        # ARN of the identity the store acts as, set by validate() (for logs and tests)
        self.caller_arn: str | None = None

    # -- plumbing --------------------------------------------------------------------------

    def _what(self, key: str, version: str | None = None) -> str:
        kind = "AWS Secrets Manager secret" if self._sm else "AWS SSM parameter"
        return f"{kind} {key!r}" + (f" version {version!r}" if version else "")

    async def _call(self, operation: str, what: str, fn: Callable[[], T]) -> T:
        with track("aws", operation):
            try:
                return await asyncio.to_thread(fn)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, what) from exc

    # -- contract --------------------------------------------------------------------------

    async def validate(self) -> None:
        """STS GetCallerIdentity: proves the credentials (and the role) without reading a
        secret; needs no IAM permission."""
        ident = await self._call("validate", self._label, self._sts.get_caller_identity)
        self.caller_arn = str(ident.get("Arn", "")) or None

    async def get(self, ref: RemoteRef) -> bytes:
        what = self._what(ref.key, ref.version)
        if self._sm:
            raw = await self._call("get", what, partial(self._sm_get, ref.key, ref.version))
        else:
            raw = await self._call("get", what, partial(self._ssm_get, ref.key, ref.version))
        if ref.property:
            return _select_property(raw, ref.property, what=what)
        return raw

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        return json_map(await self.get(ref), what=self._what(ref.key))

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        pattern = compile_regexp(query.name_regexp, what=self._label)
        fn = self._sm_find if self._sm else self._ssm_find
        return await self._call(
            "find", self._label, partial(fn, query.path, pattern, dict(query.tags))
        )

    async def close(self) -> None:
        for c in (self._client, self._sts):
            await asyncio.to_thread(c.close)

    # -- Secrets Manager (blocking, run in a thread) ---------------------------------------

    def _sm_get(self, key: str, version: str | None) -> bytes:
        resp = self._client.get_secret_value(SecretId=key, **sm_version_args(version))
        return self._sm_value(resp, key)

    def _sm_value(self, resp: Mapping[str, Any], key: str) -> bytes:
        if resp.get("SecretString") is not None:
            return str(resp["SecretString"]).encode()
        if resp.get("SecretBinary") is not None:
            return bytes(resp["SecretBinary"])
        raise SecretNotFound(f"{self._what(key)}: version has neither a string nor a binary value")

    def _sm_find(
        self, path: str | None, pattern: re.Pattern[str] | None, tags: dict[str, str]
    ) -> dict[str, bytes]:
        filters: list[dict[str, Any]] = []
        if path:
            filters.append({"Key": "name", "Values": [path]})
        if tags:
            filters.append({"Key": "tag-key", "Values": sorted(tags)})
        wanted: list[str] = []
        names: dict[str, str] = {}
        for page in self._client.get_paginator("list_secrets").paginate(
            Filters=filters, PaginationConfig={"PageSize": 100}
        ):
            for entry in page.get("SecretList", []):
                name = str(entry["Name"])
                if path and not name.startswith(path):
                    continue
                if pattern is not None and not pattern.search(name):
                    continue
                have = {str(t["Key"]): str(t.get("Value", "")) for t in entry.get("Tags", [])}
                if not tags_match(have, tags):
                    continue
                wanted.append(str(entry["ARN"]))
                names[str(entry["ARN"])] = name
        out: dict[str, bytes] = {}
        for i in range(0, len(wanted), 20):
            resp = self._client.batch_get_secret_value(SecretIdList=wanted[i : i + 20])
            for err in resp.get("Errors", []):
                code = str(err.get("ErrorCode", "Unknown"))
                if code in _NOT_FOUND:
                    continue  # deleted between the list and the read
                raise ClientError({"Error": {"Code": code}}, "BatchGetSecretValue")
            for item in resp.get("SecretValues", []):
                arn = str(item["ARN"])
                name = names.get(arn, str(item.get("Name", arn)))
                out[name] = self._sm_value(item, name)
        return out

    # -- Parameter Store (blocking, run in a thread) ---------------------------------------

    def _ssm_get(self, key: str, version: str | None) -> bytes:
        resp = self._client.get_parameter(Name=ssm_name(key, version), WithDecryption=True)
        return str(resp["Parameter"]["Value"]).encode()

    def _ssm_find(
        self, path: str | None, pattern: re.Pattern[str] | None, tags: dict[str, str]
    ) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if path and path.startswith("/") and not tags:
            # One call per page returns names and decrypted values together.
            for page in self._client.get_paginator("get_parameters_by_path").paginate(
                Path=path, Recursive=True, WithDecryption=True
            ):
                for param in page.get("Parameters", []):
                    name = str(param["Name"])
                    if pattern is None or pattern.search(name):
                        out[name] = str(param["Value"]).encode()
            return out
        filters: list[dict[str, Any]] = [
            {"Key": f"tag:{k}", "Option": "Equals", "Values": [v]} for k, v in sorted(tags.items())
        ]
        if path and path.startswith("/"):
            filters.append({"Key": "Path", "Option": "Recursive", "Values": [path]})
        elif path:
            filters.append({"Key": "Name", "Option": "BeginsWith", "Values": [path]})
        names: list[str] = []
        for page in self._client.get_paginator("describe_parameters").paginate(
            ParameterFilters=filters
        ):
            for meta in page.get("Parameters", []):
                name = str(meta["Name"])
                if pattern is None or pattern.search(name):
                    names.append(name)
        for i in range(0, len(names), 10):
            resp = self._client.get_parameters(Names=names[i : i + 10], WithDecryption=True)
            for param in resp.get("Parameters", []):
                out[str(param["Name"])] = str(param["Value"]).encode()
        return out


async def create(ctx: StoreContext) -> Backend:
    """Entry point ``aws``: parse the store, resolve credentials, build the clients once."""
    label = store_label(ctx)
    settings = await parse_settings(ctx)
    try:
        client, sts = await asyncio.to_thread(build_clients, settings)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, label) from exc
    return AwsBackend(settings, client, sts, label)
