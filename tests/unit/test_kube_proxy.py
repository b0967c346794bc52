"""``kube.errors.service_answer``: through the API server's service proxy, the service's own answers
(any status) come back as they are; only the API server's ``Status`` refusals raise."""

from __future__ import annotations

import json

import pytest

from secretsync.errors import KubeError, KubeForbidden, KubeNotFound
from secretsync.kube.errors import service_answer

WHAT = "POST /v1/verify on Service ns/ctl via the API server proxy"


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": reason, "message": message, "code": code}).encode()


def test_the_services_error_answers_are_returned_with_their_reason() -> None:
    body = json.dumps({"reason": "DecryptFailed", "message": "no key opens it"}).encode()
    assert service_answer(409, "Conflict", body, WHAT) == (
        409, {"reason": "DecryptFailed", "message": "no key opens it"})
    no_keys = json.dumps({"reason": "NoKeys", "message": "no key loaded yet"}).encode()
    assert service_answer(503, "Service Unavailable", no_keys, WHAT)[1]["reason"] == "NoKeys"


def test_success_is_the_json_object() -> None:
    doc = {"kind": "SealedSecret", "spec": {"encryptedData": {"a": "QUJD"}}}
    assert service_answer(200, "OK", json.dumps(doc).encode(), WHAT) == (200, doc)
    assert service_answer(200, "OK", b"", WHAT) == (200, {})


def test_api_server_refusals_raise_typed_errors_with_its_message() -> None:
    with pytest.raises(KubeForbidden) as forbidden:
        service_answer(403, "Forbidden", status_body(
            403, "Forbidden", 'services "http:ctl:http" is forbidden'), WHAT)
    assert forbidden.value.message == f'{WHAT}: services "http:ctl:http" is forbidden'
    with pytest.raises(KubeNotFound):
        service_answer(404, "Not Found", status_body(404, "NotFound", 'services "x" not found'),
                        WHAT)
    with pytest.raises(KubeError) as unavailable:
        service_answer(503, "Service Unavailable", status_body(
            503, "ServiceUnavailable", 'no endpoints available for service "http:ctl:http"'),
            WHAT)
    assert unavailable.value.status == 503
    assert "no endpoints available" in unavailable.value.message


def test_a_body_that_is_not_a_json_object_is_never_quoted() -> None:
    secretish = b"<html>s3cret-body</html>"
    assert service_answer(404, "Not Found", secretish, WHAT) == (
        404, {"reason": "HTTP404", "message": "Not Found"})
    assert service_answer(502, "", b"\xff\xfe", WHAT) == (
        502, {"reason": "HTTP502", "message": "HTTP 502"})
    with pytest.raises(KubeError) as bad:
        service_answer(200, "OK", secretish, WHAT)
    assert "s3cret" not in bad.value.message
    with pytest.raises(KubeError):
        service_answer(200, "OK", b"[1, 2]", WHAT)
