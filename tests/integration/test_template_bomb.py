"""A hostile template cannot hurt the controller (issue 21, item 1), against the real
controller process and API server.

A 60-byte ``{{ 'x' * 300000000 }}`` once took the controller from 65 MB to a 1.39 GB peak and
was re-rendered on every retry. Here the bombs (repetition, doubling by concatenation,
loops without end, the same through ``POST /v1/verify``) get ``InvalidTemplate`` naming the
bound, are not rendered again while their spec is unchanged, other objects keep syncing,
and the controller's peak RSS (``VmHWM``) stays within a few MiB of what it was before.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from secretsync.kube import Kube
from tests.integration._external import World
from tests.integration.test_external_sync import admin, world  # noqa: F401  (fixtures)
from tests.integration.test_sealed_controller import (
    Start,
    create,
    metric,
    seal,
    wait_condition,
)

pytestmark = pytest.mark.integration

BOMBS = {
    "bomb-repeat": "{{ 'x' * 300000000 }}",
    "bomb-double": "{% set ns = namespace(s=user) %}{% for i in range(64) %}"
                   "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "bomb-loop": "{% for i in range(100000) %}{% for j in range(100000) %}"
                 "{% endfor %}{% endfor %}",
}
# A peak within this much of the peak before the bombs is "within a few MiB of normal".
SLACK = 6 * 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def test_template_bombs_leave_the_controller_unhurt(
    kube: Kube, namespace: str, start_controller: Start
) -> None:
    ctl = start_controller()
    assert ctl.popen is not None
    warm = seal("warm", namespace)  # the first template render imports and warms Jinja2
    warm["spec"]["template"]["data"] = {"dsn": "{{ user }}:{{ password }}@db"}
    create(kube, warm)
    wait_condition(kube, namespace, "warm", "True", "Unsealed")
    status, _ = ctl.http("/v1/verify", yaml.safe_dump(warm).encode())
    assert status == 200
    before = peak_rss(ctl.popen.pid)

    for name, template in BOMBS.items():
        doc = seal(name, namespace)
        doc["spec"]["template"]["data"] = {"out": template}
        create(kube, doc)
    for name in BOMBS:
        c = wait_condition(kube, namespace, name, "False", "InvalidTemplate", timeout=60)
        assert "template for key 'out'" in c["message"]
    messages = {n: wait_condition(kube, namespace, n, "False")["message"] for n in BOMBS}
    assert "over the limit" in messages["bomb-repeat"]
    assert "concatenation" in messages["bomb-double"]
    assert "iterations" in messages["bomb-loop"] or "deadline" in messages["bomb-loop"]

    bomb = seal("bomb-verify", namespace)
    bomb["spec"]["template"]["data"] = {"out": BOMBS["bomb-repeat"]}
    status, body = ctl.http("/v1/verify", yaml.safe_dump(bomb).encode())
    assert status == 409 and b"InvalidTemplate" in body, body

    # other objects keep syncing
    create(kube, seal("after", namespace))
    wait_condition(kube, namespace, "after", "True", "Unsealed")

    # not rendered again while the spec is unchanged: the periodic retry (--retry-interval 2)
    # and the failure counters stay where they are
    errors = metric(ctl, 'secretsync_unseal_errors_total{reason="InvalidTemplate"}')
    assert errors >= len(BOMBS)
    time.sleep(6)
    assert metric(ctl, 'secretsync_unseal_errors_total{reason="InvalidTemplate"}') == errors

    # a fixed spec is rendered again at once
    kube.patch_custom("secretsync.io", "v1alpha1", "sealedsecrets", namespace, "bomb-repeat",
                      {"spec": {"template": {"data": {"out": "{{ 'x' * 3 }}"}}}})
    wait_condition(kube, namespace, "bomb-repeat", "True", "Unsealed")

    after = peak_rss(ctl.popen.pid)
    print(f"controller peak RSS: {before / 2**20:.1f} MiB before the bombs, "
          f"{after / 2**20:.1f} MiB after (+{(after - before) / 2**20:.2f} MiB)")
    assert after - before < SLACK, (before, after)
    assert ctl.alive()


def test_external_secret_bomb_waits_for_a_new_spec(world: World) -> None:  # noqa: F811
    w = world
    w.put("t", {"v": "plain"})
    w.apply_es("bomb", {
        "target": {"template": {"data": {"a": "{{ v * 300000000 }}"}}},
        "data": [{"secretKey": "v", "remoteRef": {"key": "t", "property": "v"}}],
        "refreshInterval": "1s",
    })
    c = w.wait_ready("bomb", "False", "InvalidTemplate")
    assert "over the limit" in c["status"]["conditions"][0]["message"]
    w.apply_es("fine", {"data": [{"secretKey": "v", "remoteRef": {"key": "t", "property": "v"}}],
                        "refreshInterval": "1s"})
    w.wait_ready("fine")
    assert w.controller is not None
    log_lines = w.controller.log().count("ExternalSecret " + w.namespace + "/bomb not synced")
    time.sleep(4)  # four refresh intervals: no retry of a template that hit a bound
    assert w.controller.log().count("ExternalSecret " + w.namespace + "/bomb not synced") == (
        log_lines)
    assert any(e.get("type") == "Warning" and e.get("reason") == "InvalidTemplate"
               for e in w.events())

