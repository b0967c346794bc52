"""``Kube._list_items``: a LIST in pages (``limit``/``continue``), started over once when the
continue token expired meanwhile (410), so that pages of two versions are never mixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from secretsync.errors import KubeError
from secretsync.kube import Kube
from secretsync.kube.config import Settings


class Paged(Kube):
    """Answers LISTs from ``pages`` (continue token -> items, next token); a token in
    ``expired`` answers 410 as many times as it is listed there."""

    def __init__(self, pages: dict[str, tuple[list[str], str]], expired: list[str]) -> None:
        super().__init__(settings=Settings("http://127.0.0.1:1", None, False, None, None, None,
                                           None, None))  # never connected: request is ours
        self.pages, self.expired = pages, expired
        self.asked: list[Mapping[str, str]] = []

    def request(self, method: str, path: str, body: Any = None, *,
                query: Mapping[str, str] | None = None, content_type: str = "",
                what: str | None = None) -> dict[str, Any]:
        query = dict(query or {})
        self.asked.append(query)
        token = query.get("continue", "")
        if token in self.expired:
            self.expired.remove(token)
            raise KubeError(f"{what}: the provided continue parameter is too old", status=410)
        names, following = self.pages[token]
        return {"items": [{"metadata": {"name": n}} for n in names],
                "metadata": {"continue": following}}


PAGES = {"": (["a", "b"], "t1"), "t1": (["c", "d"], "t2"), "t2": (["e"], "")}


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_pages_are_joined_in_order() -> None:
    kube = Paged(PAGES, [])
    assert names(kube.list_secrets("ns", "l=1", page_size=2)) == ["a", "b", "c", "d", "e"]
    assert [q.get("continue", "") for q in kube.asked] == ["", "t1", "t2"]
    assert all(q["limit"] == "2" and q["labelSelector"] == "l=1" for q in kube.asked)


def test_without_a_page_size_one_request_without_limit() -> None:
    kube = Paged({"": (["a", "b"], "")}, [])
    assert names(kube.list_secrets("ns")) == ["a", "b"]
    assert len(kube.asked) == 1 and "limit" not in kube.asked[0]


def test_an_expired_continue_token_starts_the_listing_over_once() -> None:
    kube = Paged(PAGES, ["t2"])
    # the first pass's a..d are dropped, not doubled
    assert names(kube.list_secrets("ns", page_size=2)) == ["a", "b", "c", "d", "e"]
    assert [q.get("continue", "") for q in kube.asked] == ["", "t1", "t2", "", "t1", "t2"]


def test_a_token_that_expires_again_is_an_error() -> None:
    kube = Paged(PAGES, ["t1", "t1"])
    with pytest.raises(KubeError) as info:
        kube.list_secrets("ns", page_size=2)
    assert info.value.status == 410


def test_other_errors_are_not_retried() -> None:
    kube = Paged(PAGES, [""])  # the first page itself fails
    with pytest.raises(KubeError):
        kube.list_secrets("ns", page_size=2)
    assert len(kube.asked) == 1
