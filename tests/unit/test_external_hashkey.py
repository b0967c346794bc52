"""The data-hash key Secret: its body round-trips, and an unusable one is a clear one-line
error naming the Secret, never quoting the value."""

from __future__ import annotations

import base64

import pytest

from secretsync import api
from secretsync.controller.external import hashkey as hk
from secretsync.errors import SecretSyncError


def test_body_round_trips_and_is_labelled() -> None:
    key = bytes(range(32))
    body = hk.secret_body("ctl-ns", hk.secret_name("ctl"), key)
    assert body["metadata"]["name"] == "ctl-hash-key"
    assert body["metadata"]["labels"] == {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}
    assert hk.key_from_secret(body, "ctl-ns", "ctl-hash-key") == key


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "has no 'hmac.key' entry"),
        ({api.HASH_KEY_DATA_KEY: "%%%not-base64"}, "is not base64"),
        ({api.HASH_KEY_DATA_KEY: base64.b64encode(b"short-secret").decode()}, "12 bytes"),
    ],
)
def test_unusable_key_is_a_clear_error(data: dict[str, str], problem: str) -> None:
    with pytest.raises(SecretSyncError) as info:
        hk.key_from_secret({"data": data}, "ctl-ns", "ctl-hash-key")
    text = info.value.message
    assert "ctl-ns/ctl-hash-key" in text and problem in text and "\n" not in text
    assert "short-secret" not in text and info.value.reason == "InvalidHashKey"
