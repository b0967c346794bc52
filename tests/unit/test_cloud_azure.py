"""Pure parts of the Azure backend: references, CA bundles, challenge verification, authority
selection and the error mapping (on azure-core's own exception types)."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from secretsync.backends._common import ca_bundle
from secretsync.backends.azure.backend import (
    challenge_check,
    secret_name,
    translate,
)
from secretsync.backends.azure.credentials import authority_for
from secretsync.backends.base import StoreContext
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

BODY = "s3cr3t-body-text"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


class _Resp:
    """The few attributes azure-core reads from a response to build an HttpResponseError."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        import json

        self.status_code = status
        self.reason = "reason"
        self.headers: dict[str, str] = {"content-type": "application/json"}
        self.request = None
        self._body = json.dumps(body).encode()
        self.content_type = "application/json"

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()

    def body(self) -> bytes:
        return self._body


def http_error(status: int, code: str, inner: str | None = None) -> HttpResponseError:
    err: dict[str, Any] = {"code": code, "message": BODY}
    if inner:
        err["innererror"] = {"code": inner}
    return HttpResponseError(response=_Resp(status, {"error": err}))


def ctx(provider: dict[str, Any]) -> StoreContext:
    async def resolve(namespace: str, name: str, key: str) -> bytes:
        return b""

    return StoreContext("SecretStore", "s", "ns", provider, resolve)


def test_secret_name() -> None:
    assert secret_name("db") == "db"
    assert secret_name("secret/db") == "db"
    with pytest.raises(SecretNotFound, match="certs are not supported"):
        secret_name("cert/db")


def test_ca_bundle_base64_or_pem_text_with_a_certificate() -> None:
    field = "spec.provider.azurekv.caBundle"
    assert ca_bundle(PEM, field, "w").startswith(b"-----BEGIN CERTIFICATE-----")
    assert ca_bundle(base64.b64encode(PEM.encode()).decode(), field, "w").startswith(
        b"-----BEGIN CERTIFICATE-----"
    )
    with pytest.raises(StoreInvalid, match=f"w: {field} is not base64"):
        ca_bundle("%%%", field, "w")
    with pytest.raises(StoreInvalid, match="holds no PEM certificate"):
        ca_bundle(base64.b64encode(b"not a pem").decode(), field, "w")
    with pytest.raises(StoreInvalid, match="holds no PEM certificate"):
        ca_bundle("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", field, "w")


def test_challenge_check_only_for_real_vault_hosts() -> None:
    assert challenge_check("https://my-vault.vault.azure.net")
    assert challenge_check("https://my-vault.vault.azure.cn/")
    assert not challenge_check("https://127.0.0.1:8443")
    assert not challenge_check("https://vault.example.internal")


def test_authority_for() -> None:
    assert authority_for(ctx({})) is None
    assert authority_for(ctx({"environmentType": "PublicCloud"})) is None
    assert authority_for(ctx({"environmentType": "ChinaCloud"})) == "login.chinacloudapi.cn"
    stack = {
        "environmentType": "AzureStackCloud",
        "customCloudConfig": {"activeDirectoryEndpoint": "https://adfs.local/"},
    }
    assert authority_for(ctx(stack)) == "https://adfs.local/"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ResourceNotFoundError(BODY), SecretNotFound),
        (ClientAuthenticationError(BODY), BackendAuthError),
        (ServiceRequestError(BODY), BackendUnavailable),
        (ServiceResponseError(BODY), BackendUnavailable),
        (http_error(403, "Forbidden", "SecretDisabled"), SecretNotFound),
        (http_error(403, "Forbidden", "AccessDenied"), BackendAuthError),
        (http_error(401, "Unauthorized"), BackendAuthError),
        (http_error(429, "Throttled"), BackendUnavailable),
        (http_error(503, "ServiceUnavailable"), BackendUnavailable),
        (http_error(400, "BadParameter"), BackendError),
    ],
)
def test_errors_are_mapped_without_body(exc: Exception, kind: type[BackendError]) -> None:
    err = translate(exc, "Azure Key Vault secret 'db'")
    assert type(err) is kind
    assert "'db'" in str(err) and BODY not in str(err) and "\n" not in str(err)


def test_tls_failures_point_at_ca_bundle() -> None:
    cause = ssl.SSLCertVerificationError("certificate verify failed")
    exc = ServiceRequestError("connect failed", error=cause)
    err = translate(exc, "store")
    assert isinstance(err, BackendUnavailable) and "caBundle" in str(err)
