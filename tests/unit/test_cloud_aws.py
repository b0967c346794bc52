"""Pure parts of the AWS backend: version selection, session names and the error mapping.

The error mapping is tested here on botocore's own exception types because the sandbox's moto
accepts any credentials and never throttles, so those branches cannot be reached against it.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from secretsync.backends.aws.config import role_session_name
from secretsync.backends.aws.errors import translate
from secretsync.backends.aws.parameter_store import ssm_name
from secretsync.backends.aws.secrets_manager import sm_version_args
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
)

BODY = "s3cr3t-in-the-response-body"


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"details {BODY}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetSecretValue",
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, {}),
        ("", {}),
        ("AWSCURRENT", {"VersionStage": "AWSCURRENT"}),
        ("AWSPREVIOUS", {"VersionStage": "AWSPREVIOUS"}),
        ("987654", {"VersionStage": "987654"}),
        (
            "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1",
            {"VersionStage": "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1"},
        ),
        (
            "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            {"VersionStage": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"},
        ),
        (
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            {"VersionId": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
        ),
        ("uuid/my-own-token", {"VersionId": "my-own-token"}),
    ],
)
def test_sm_version_args(version: str | None, expected: dict[str, str]) -> None:
    assert sm_version_args(version) == expected


def test_ssm_name() -> None:
    assert ssm_name("/app/db", None) == "/app/db"
    assert ssm_name("/app/db", "3") == "/app/db:3"
    assert ssm_name("/app/db", "stable") == "/app/db:stable"


def test_role_session_name_is_valid_for_sts() -> None:
    assert role_session_name("my-store") == "secretsync-my-store"
    odd = role_session_name("weird name/with:chars" + "x" * 80)
    assert len(odd) == 64
    assert all(c.isalnum() or c in "_+=,.@-" for c in odd)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ResourceNotFoundException", 400, SecretNotFound),
        ("ParameterNotFound", 400, SecretNotFound),
        ("ParameterVersionNotFound", 400, SecretNotFound),
        ("UnrecognizedClientException", 400, BackendAuthError),
        ("AccessDeniedException", 400, BackendAuthError),
        ("InvalidSignatureException", 400, BackendAuthError),
        ("ExpiredTokenException", 400, BackendAuthError),
        ("AccessDenied", 403, BackendAuthError),
        ("SomethingNew", 403, BackendAuthError),
        ("ThrottlingException", 400, BackendUnavailable),
        ("TooManyRequestsException", 429, BackendUnavailable),
        ("InternalServiceError", 500, BackendUnavailable),
        ("SomethingNew", 503, BackendUnavailable),
        ("InvalidRequestException", 400, SecretNotFound),
        ("ValidationException", 400, BackendError),
    ],
)
def test_client_errors_are_mapped(code: str, status: int, kind: type[BackendError]) -> None:
    err = translate(client_error(code, status), "AWS Secrets Manager secret 'db'")
    assert type(err) is kind
    text = str(err)
    assert "'db'" in text and code in text
    assert BODY not in text and "\n" not in text


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_transport_errors_are_unavailable(exc: Exception) -> None:
    assert isinstance(translate(exc, "store"), BackendUnavailable)


def test_no_credentials_is_auth_error() -> None:
    err = translate(NoCredentialsError(), "SecretStore ns/s")
    assert isinstance(err, BackendAuthError)
    assert "auth.secretRef" in str(err)
