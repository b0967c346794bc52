"""AWS SSM Parameter Store (``service: ParameterStore``): reads and finds, blocking, on one client.

Why this module exists: one module per AWS service. The backend runs these functions in a
worker thread and translates what they raise; they speak only the SSM API. Every read asks for
decryption (``SecureString``).

Versions: a version number or label, sent as the ``name:selector`` form. ``find.path``
starting with ``/`` is a hierarchy read recursively (one ``GetParametersByPath`` page carries
names and values), anything else a name prefix; ``find.tags`` are parameter tags.
"""

from __future__ import annotations

import re
from typing import Any

CLIENT = "ssm"
KIND = "AWS SSM parameter"


def ssm_name(key: str, version: str | None) -> str:
    """Parameter name with an optional ``:version`` / ``:label`` selector."""
    return f"{key}:{version}" if version else key


def get(client: Any, key: str, version: str | None) -> bytes:
    """One parameter's (decrypted) value."""
    resp = client.get_parameter(Name=ssm_name(key, version), WithDecryption=True)
    return str(resp["Parameter"]["Value"]).encode()


def find(
    client: Any, path: str | None, pattern: re.Pattern[str] | None, tags: dict[str, str]
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if path and path.startswith("/") and not tags:
        # One call per page returns names and decrypted values together.
        for page in client.get_paginator("get_parameters_by_path").paginate(
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
    for page in client.get_paginator("describe_parameters").paginate(
        ParameterFilters=filters
    ):
        for meta in page.get("Parameters", []):
            name = str(meta["Name"])
            if pattern is None or pattern.search(name):
                names.append(name)
    for i in range(0, len(names), 10):
        resp = client.get_parameters(Names=names[i : i + 10], WithDecryption=True)
        for param in resp.get("Parameters", []):
            out[str(param["Name"])] = str(param["Value"]).encode()
    return out
