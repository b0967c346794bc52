"""The controller's ``/v1/verify`` and ``/v1/rotate`` answer hostile bodies with 400 and a
reason, never 500 nor a gigabyte of memory: deep nesting, alias bombs, duplicate keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from secretsync.controller.endpoints import make_app
from secretsync.keys import KeyRegistry
from tests.hostile import billion_laughs
from tests.keypairs import keypair


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    with ThreadPoolExecutor(1) as pool:
        rt = SimpleNamespace(
            keys=SimpleNamespace(registry=KeyRegistry([keypair(0).key])),
            pool=pool,
            is_leader=True,
            operator_ready=True,
        )
        async with TestClient(TestServer(make_app(rt))) as c:  # type: ignore[arg-type]
            yield c


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"kind": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested deeper"),
        ("[" * 200_000, "nested deeper"),
        (billion_laughs("kind"), "aliases expand"),
        ("kind: SealedSecret\nkind: SealedSecret\n", "duplicate key 'kind'"),
        ('{"kind": "SealedSecret", "kind": "x"}', "duplicate key 'kind'"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/verify", "/v1/rotate"])
async def test_hostile_bodies_get_400(
    client: TestClient[Any, Any], path: str, body: str, needle: str
) -> None:
    resp = await client.post(path, data=body.encode())
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert answer["reason"] == "InvalidSpec" and needle in answer["message"]
