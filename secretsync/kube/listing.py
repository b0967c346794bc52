"""LISTs, in pages when asked, over any ``request`` callable.

Why this exists: a LIST of every Secret in a cluster can be one very large answer; in pages
(``limit``/``continue``) no single answer holds them all. Paging has one rule that is easy to
get wrong: pages read at two different versions must not be mixed, so a continue token that
expired meanwhile (410: the store was compacted) starts the listing over -- once. Written over
``Kube.request`` (passed in), so that it can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from secretsync.errors import KubeError

Obj = dict[str, Any]


def list_items(request: Callable[..., Obj], path: str, query: Mapping[str, str], what: str,
               page_size: int = 0) -> list[Obj]:
    """The items of a LIST at ``path``, page after page when ``page_size`` is set."""
    for attempt in (0, 1):
        items: list[Obj] = []
        token = ""
        while True:
            paging = {"limit": str(page_size), "continue": token} if page_size else {}
            try:
                resp = request("GET", path, query={**query, **paging}, what=what)
            except KubeError as exc:
                if exc.status == 410 and token and attempt == 0:
                    break
                raise
            items.extend(resp.get("items") or [])
            token = str((resp.get("metadata") or {}).get("continue") or "")
            if not token:
                return items
    raise AssertionError("unreachable")  # the second attempt returns or raises
