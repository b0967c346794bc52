"""Offline ``unseal`` renders ``spec.template.data`` as the controller does (disaster recovery
must give back the Secret the cluster had), within the same render bounds."""

from __future__ import annotations

import base64

import yaml

from tests.cli.conftest import Run, check_one_line_error
from tests.keypairs import keypair

SECRET = """apiVersion: v1
kind: Secret
metadata: {name: db, namespace: app}
stringData: {user: admin, password: s3cret-pw}
"""


def _sealed(run: Run, tmp_path_template: dict[str, str]) -> str:
    res = run("seal", "--cert", keypair(0).cert_path, input=SECRET)
    assert res.rc == 0, res.err
    doc = yaml.safe_load(res.out)
    doc["spec"]["template"]["data"] = tmp_path_template
    return yaml.safe_dump(doc)


def test_unseal_renders_template_data(run: Run) -> None:
    sealed = _sealed(run, {"dsn": "postgres://{{ user }}:{{ password }}@db/app"})
    res = run("unseal", "--private-key", keypair(0).key_path, input=sealed)
    assert res.rc == 0, res.err
    data = {k: base64.b64decode(v) for k, v in yaml.safe_load(res.out)["data"].items()}
    assert data == {"user": b"admin", "password": b"s3cret-pw",
                    "dsn": b"postgres://admin:s3cret-pw@db/app"}


def test_unseal_template_bomb_is_one_line(run: Run) -> None:
    sealed = _sealed(run, {"x": "{{ password * 300000000 }}"})
    res = run("unseal", "--private-key", keypair(0).key_path, input=sealed)
    check_one_line_error(res, "template for key 'x'", "over the limit")
    assert "s3cret-pw" not in res.err and res.out == ""
