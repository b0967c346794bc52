"""An engine entry keeps its ExternalSecret's spec typed: parsed once per delivered body, kept
across our own status writes, never overwriting a newer spec the watch delivered meanwhile."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from secretsync.controller.external import timetable
from secretsync.controller.external.timetable import Entry
from secretsync.errors import InvalidInput


def es(generation: int, key: str = "db") -> dict[str, Any]:
    return {
        "apiVersion": "secretsync.io/v1alpha1", "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "ns", "uid": "u", "generation": generation},
        "spec": {"secretStoreRef": {"name": "vault"},
                 "data": [{"secretKey": "pw", "remoteRef": {"key": key}}]},
    }


def test_parsed_once_per_body_and_kept_across_status_writes() -> None:
    entry = Entry(body=es(1))
    with mock.patch.object(timetable, "parse_spec", wraps=timetable.parse_spec) as parse:
        first = entry.spec()
        assert entry.spec() is first and parse.call_count == 1
        entry.set_status({"syncedDataHash": "h"})
        assert entry.spec() is first and parse.call_count == 1
        assert entry.body["status"] == {"syncedDataHash": "h"}
        entry.body = es(2, key="other")  # the watch delivers a new spec
        assert entry.spec().data[0].ref.key == "other" and parse.call_count == 2


def test_status_write_keeps_a_newer_spec() -> None:
    entry = Entry(body=es(1))
    entry.spec()
    entry.body = es(2, key="newer")  # arrived while our status write was in flight
    entry.set_status({"observedGeneration": 1})
    assert entry.body["metadata"]["generation"] == 2
    assert entry.spec().data[0].ref.key == "newer"


def test_invalid_spec_raises_each_time_without_reparsing() -> None:
    entry = Entry(body={"metadata": {"name": "x"}})
    with mock.patch.object(timetable, "parse_spec", wraps=timetable.parse_spec) as parse:
        for _ in range(3):
            with pytest.raises(InvalidInput, match="spec is missing"):
                entry.spec()
        assert parse.call_count == 1
