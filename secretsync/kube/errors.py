"""An error answer of the API server as the ``KubeError`` it stands for.

Why this exists: a request can go out three ways (our own connections, the ``kubernetes``
client's path, the API server's service proxy), and each must fail alike -- the same
exception class for a status (404 ``KubeNotFound``, 409 ``KubeConflict``, 401/403
``KubeForbidden``, 400/422 ``KubeInvalid``) and the same text: the API server's own status
message, never a request body (which may hold secret data). Pure functions of (status, reason
phrase, body); nothing here sends anything.
"""

from __future__ import annotations

import json
from typing import Any

from secretsync.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
)


def http_error(status: int, reason: str, body: Any, what: str) -> KubeError:
    """The ``KubeError`` for an error response; its text is the API server's message."""
    message = reason
    try:
        doc = json.loads(body or b"{}")
        message = str(doc.get("message") or message)
    except (ValueError, TypeError, AttributeError):
        pass
    text = f"{what}: {message[:300]}" if message else f"{what}: HTTP {status}"
    if status == 404:
        return KubeNotFound(text, status=status)
    if status == 409:
        return KubeConflict(text, status=status)
    if status in (401, 403):
        return KubeForbidden(text, status=status)
    if status in (400, 422):
        return KubeInvalid(text, status=status)
    return KubeError(text, status=status)


def service_answer(status: int, reason: str, data: bytes,
                   what: str) -> tuple[int, dict[str, Any]]:
    """Pure: the answer of a Service reached through the API server proxy. An error the API
    server made itself is a ``v1 Status`` object (the proxied service's own errors are passed
    through unchanged), so that becomes the ``KubeError`` it stands for; anything else is the
    service's answer. A body that is not a JSON object is never quoted (it could be anything)."""
    try:
        doc = json.loads(data) if data else {}
    except (ValueError, UnicodeDecodeError):
        doc = None
    ok = 200 <= status < 300
    if (not ok and isinstance(doc, dict) and doc.get("kind") == "Status"
            and doc.get("apiVersion") == "v1"):
        raise http_error(status, reason, data, what)
    if isinstance(doc, dict):
        return status, doc
    if ok:
        raise KubeError(f"{what}: the answer is not a JSON object (HTTP {status})", status=status)
    return status, {"reason": f"HTTP{status}", "message": reason or f"HTTP {status}"}
