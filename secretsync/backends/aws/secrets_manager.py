"""AWS Secrets Manager (``service: SecretsManager``): reads and finds, blocking, on one client.

Why this module exists: one module per AWS service. The backend runs these functions in a
worker thread and translates what they raise; they speak only the Secrets Manager API.

Versions: no version = ``AWSCURRENT``; ``uuid/<id>`` or a value shaped like a UUID is a
``VersionId``; anything else (``AWSCURRENT``, ``AWSPREVIOUS``, a custom label) is a
``VersionStage``. ``find.path`` is a name prefix; ``find.tags`` are secret tags. Matches are
read in batches of 20 with ``BatchGetSecretValue``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from secretsync.backends._common import tags_match
from secretsync.backends.aws.errors import NOT_FOUND
from secretsync.errors import SecretNotFound

CLIENT = "secretsmanager"
KIND = "AWS Secrets Manager secret"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def sm_version_args(version: str | None) -> dict[str, str]:
    """GetSecretValue arguments for ``remoteRef.version`` (see the module docstring)."""
    if not version:
        return {}
    if version.startswith("uuid/"):
        return {"VersionId": version[len("uuid/") :]}
    if _UUID.match(version):
        return {"VersionId": version}
    return {"VersionStage": version}


def get(client: Any, key: str, version: str | None) -> bytes:
    """One secret's value (string or binary)."""
    resp = client.get_secret_value(SecretId=key, **sm_version_args(version))
    return value(resp, key)


def value(resp: Mapping[str, Any], key: str) -> bytes:
    """The value of a GetSecretValue / BatchGetSecretValue entry."""
    if resp.get("SecretString") is not None:
        return str(resp["SecretString"]).encode()
    if resp.get("SecretBinary") is not None:
        return bytes(resp["SecretBinary"])
    raise SecretNotFound(f"{KIND} {key!r}: version has neither a string nor a binary value")


def find(
    client: Any, path: str | None, pattern: re.Pattern[str] | None, tags: dict[str, str]
) -> dict[str, bytes]:
    filters: list[dict[str, Any]] = []
    if path:
        filters.append({"Key": "name", "Values": [path]})
    if tags:
        filters.append({"Key": "tag-key", "Values": sorted(tags)})
    wanted: list[str] = []
    names: dict[str, str] = {}
    for page in client.get_paginator("list_secrets").paginate(
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
        resp = client.batch_get_secret_value(SecretIdList=wanted[i : i + 20])
        for err in resp.get("Errors", []):
            code = str(err.get("ErrorCode", "Unknown"))
            if code in NOT_FOUND:
                continue  # deleted between the list and the read
            raise ClientError({"Error": {"Code": code}}, "BatchGetSecretValue")
        for item in resp.get("SecretValues", []):
            arn = str(item["ARN"])
            name = names.get(arn, str(item.get("Name", arn)))
            out[name] = value(item, name)
    return out
