"""Pure parts of the GCP backend: names, versions, filters, endpoints, key parsing and the
error mapping (on google-api-core's own exception types, since the sandbox server never
refuses credentials or throttles)."""

from __future__ import annotations

import json

import pytest
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from secretsync.backends.gcp import (
    label_filter,
    parse_endpoint,
    parse_sa_key,
    secret_path,
    translate,
    version_id,
)
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

BODY = "s3cr3t-server-text"


def test_version_id() -> None:
    assert version_id(None) == "latest"
    assert version_id("") == "latest"
    assert version_id("latest") == "latest"
    assert version_id("3") == "3"
    assert version_id("versions/3") == "3"


def test_secret_path() -> None:
    assert secret_path("p", "db") == "projects/p/secrets/db"
    assert secret_path("p", "projects/q/secrets/db") == "projects/q/secrets/db"
    assert secret_path("p", "projects/q/secrets/db/versions/4") == "projects/q/secrets/db"


def test_label_filter() -> None:
    assert label_filter({}) == ""
    assert label_filter({"team": "a", "env": "prod"}) == "labels.env=prod labels.team=a"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (None, (None, False)),
        ("127.0.0.1:9090", ("127.0.0.1:9090", True)),
        ("http://127.0.0.1:9090/", ("127.0.0.1:9090", True)),
        ("https://secretmanager.googleapis.com", ("secretmanager.googleapis.com", False)),
        ("https://sm.internal:8443", ("sm.internal:8443", False)),
    ],
)
def test_parse_endpoint(endpoint: str | None, expected: tuple[str | None, bool]) -> None:
    assert parse_endpoint(endpoint) == expected


def test_parse_sa_key_never_quotes_the_key() -> None:
    good = {"client_email": "a@b", "private_key": BODY, "token_uri": "https://t"}
    assert parse_sa_key(json.dumps(good).encode(), what="w") == good
    for raw, message in [
        (b"{" + BODY.encode(), "not JSON"),
        (json.dumps([BODY]).encode(), "not a JSON object"),
        (json.dumps({"private_key": BODY}).encode(), "lacks client_email, token_uri"),
    ]:
        with pytest.raises(StoreInvalid, match=message) as info:
            parse_sa_key(raw, what="SecretStore ns/s")
        assert BODY not in str(info.value)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (gexc.NotFound(BODY), SecretNotFound),
        (gexc.PermissionDenied(BODY), BackendAuthError),
        (gexc.Unauthenticated(BODY), BackendAuthError),
        (gexc.ServiceUnavailable(BODY), BackendUnavailable),
        (gexc.DeadlineExceeded(BODY), BackendUnavailable),
        (gexc.ResourceExhausted(BODY), BackendUnavailable),
        (gexc.InternalServerError(BODY), BackendUnavailable),
        (gexc.FailedPrecondition(BODY), SecretNotFound),
        (gexc.InvalidArgument(BODY), BackendError),
        (gexc.RetryError(BODY, gexc.ServiceUnavailable(BODY)), BackendUnavailable),
        (auth_exc.DefaultCredentialsError(BODY), BackendAuthError),
        (auth_exc.RefreshError(BODY), BackendAuthError),
        (auth_exc.TransportError(BODY), BackendUnavailable),
    ],
)
def test_errors_are_mapped_without_server_text(exc: Exception, kind: type[BackendError]) -> None:
    err = translate(exc, "GCP secret 'db'")
    assert type(err) is kind
    assert "'db'" in str(err) and BODY not in str(err) and "\n" not in str(err)
