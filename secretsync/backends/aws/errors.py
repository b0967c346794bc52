"""botocore exceptions -> the backend contract's error types (the AWS SDK boundary).

Why this module exists: every AWS call the backend makes, for either service and for STS, is
translated by ``translate`` into ``SecretNotFound`` / ``BackendAuthError`` /
``BackendUnavailable`` / ``StoreInvalid`` with a message naming the secret (or the store) and
the AWS error code, never the value or the response body. Importing it also caps botocore's
loggers, which print response bodies (secret values) at DEBUG.
"""

from __future__ import annotations

import logging

from botocore.exceptions import (
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

from secretsync.backends._common import cap_loggers
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

# botocore logs every response body (SecretString, parameter values) at DEBUG.
cap_loggers({"botocore": logging.INFO, "boto3": logging.INFO})

NOT_FOUND = frozenset(
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


def translate(exc: Exception, what: str) -> BackendError:
    """Map a botocore exception to the contract's error types. ``what`` names the secret or
    the store; the message carries the AWS error code, never the response body."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in NOT_FOUND:
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
