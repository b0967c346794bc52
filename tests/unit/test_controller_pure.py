"""Pure decisions of the controller: may I take the Lease, is a new key due, flag parsing."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
from pathlib import Path

import pytest

from secretsync.controller.keyring import renewal_due
from secretsync.controller.leader import can_acquire
from secretsync.controller.main import _bind_http, _duration, _loop_exception
from secretsync.controller.settings import KeySettings, parse_cutoff
from secretsync.errors import SecretSyncError

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def lease(holder: str | None, renewed: dt.datetime | None, duration: int = 15) -> dict:
    spec: dict = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"spec": spec}


def test_can_acquire() -> None:
    assert can_acquire(None, "me", NOW)
    assert can_acquire(lease(None, NOW), "me", NOW)  # released
    assert can_acquire(lease("me", NOW), "me", NOW)  # renew our own
    assert not can_acquire(lease("other", NOW - dt.timedelta(seconds=5)), "me", NOW)
    assert not can_acquire(lease("other", NOW - dt.timedelta(seconds=14.9)), "me", NOW)
    assert can_acquire(lease("other", NOW - dt.timedelta(seconds=15)), "me", NOW)  # expired
    assert can_acquire(lease("other", None), "me", NOW)


def test_renewal_due() -> None:
    period = 720 * 3600.0
    assert renewal_due(None, NOW, period)  # no key at all
    assert not renewal_due(NOW - dt.timedelta(days=29), NOW, period)
    assert renewal_due(NOW - dt.timedelta(days=30), NOW, period)
    assert not renewal_due(NOW - dt.timedelta(days=400), NOW, 0)  # renewal disabled
    cutoff = NOW - dt.timedelta(hours=1)
    assert renewal_due(NOW - dt.timedelta(days=1), NOW, period, cutoff)  # older than cutoff
    assert not renewal_due(NOW - dt.timedelta(minutes=5), NOW, period, cutoff)
    future = NOW + dt.timedelta(days=1)
    assert not renewal_due(NOW - dt.timedelta(days=1), NOW, period, future)


def test_parse_cutoff() -> None:
    assert parse_cutoff(None) is None
    assert parse_cutoff("2026-01-01T00:00:00Z") == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(SecretSyncError, match="RFC 3339"):
        parse_cutoff("yesterday")


def test_duration() -> None:
    assert _duration("720h") == 720 * 3600
    assert _duration("1h30m") == 5400
    assert _duration("45s") == 45
    assert _duration("2d") == 2 * 86400
    assert _duration("90") == 90
    for bad in ("", "5x", "h", "10h5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _duration(bad)


def test_kopf_is_imported_without_the_kubernetes_client_which_stays_importable() -> None:
    """The controller's memory: kopf must not pull in the kubernetes client (~31 MiB), and
    the client must still import afterwards (kubeconfig fallbacks use it)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from secretsync.controller.operator import _import_kopf_without_kubernetes as f\n"
        "f()\n"
        "assert 'kopf' in sys.modules\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')\n"
        "assert not loaded, loaded\n"
        "import kopf\n"
        "kopf.set_default_registry(kopf.OperatorRegistry())\n"
        "kopf.get_default_registry()\n"
        "assert 'kubernetes' not in sys.modules\n"
        "import kubernetes.client\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_concurrent_key_reloads_never_leave_a_listed_key_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that starts while another is still reading a key Secret must return with that
    key in the registry (else the controller generates a second key beside an existing one:
    the standby follower's reload overlaps start()'s after winning the Lease)."""
    import threading
    import time

    from secretsync.controller import keyring
    from secretsync.keys import SealingKey, secret_body_for_key
    from tests.keypairs import keypair

    key = keypair(0, 2048).key
    secret = secret_body_for_key(key, namespace="ctl")
    secret["metadata"]["resourceVersion"] = "1"

    class Kube:
        def list_secrets(self, namespace: str, selector: str) -> list[dict[str, object]]:
            return [secret]

    parsing = threading.Event()
    real = keyring.key_from_secret

    def slow(*a: object, **k: object) -> SealingKey:
        parsing.set()
        time.sleep(0.3)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(keyring, "key_from_secret", slow)
    keys = KeySettings(namespace="ctl", name="c", renew_period=0, prefix="k-", bits=2048,
                       poll_interval=1)
    manager = keyring.KeyManager(Kube(), keys)  # type: ignore[arg-type]
    first = threading.Thread(target=manager.reload)
    first.start()
    assert parsing.wait(5)
    manager.reload()  # while the first is still parsing the key
    assert len(manager.registry) == 1
    first.join()


def test_kopf_settings_filter_the_secret_watch_on_the_server() -> None:
    """Only Secrets we manage reach the controller (the API server filters the watch); kopf
    posts no Events of its own and keeps no diff-base copy of objects (for a Secret that would
    be its data). Needs kopf >= 1.45 (the declared bound; ``make test-lowest`` runs this)."""
    import kopf

    from secretsync import api
    from secretsync.controller.operator import _kopf_settings

    settings = _kopf_settings()
    secrets = settings.watching.label_selectors.collect(kopf.Resource("", "v1", "secrets"))
    assert secrets == [f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY_VALUE}"]
    sealed = kopf.Resource(api.GROUP, api.VERSION, api.PLURAL_SEALED)
    assert settings.watching.label_selectors.collect(sealed) == []
    assert settings.posting.enabled is False
    assert settings.persistence.diffbase_storage.fetch(body={"data": {"k": "dg=="}}) is None


def test_a_busy_http_port_stops_the_start_with_one_line_before_connecting(
        tmp_path: Path) -> None:
    """The endpoints' socket is bound first (aiohttp is imported later, off the critical
    path): a busy port fails at once -- before any kubeconfig is read -- with exit 1, one
    line naming the address, and no traceback."""
    import socket
    import subprocess
    import sys

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SecretSyncError) as err:
            _bind_http("127.0.0.1", port)
        assert err.value.reason == "HttpPortUnavailable"
        proc = subprocess.run(
            [sys.executable, "-m", "secretsync", "controller", "--http-host", "127.0.0.1",
             "--http-port", str(port), "--kubeconfig", str(tmp_path / "absent")],
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"cannot serve HTTP on 127.0.0.1:{port}" in out, out
    assert "Traceback" not in out and "absent" not in out, out
    with _bind_http("127.0.0.1", port) as sock:  # free again: bound, non-blocking
        assert sock.getsockname()[1] == port and not sock.getblocking()


def test_http_binds_every_address_ipv4_and_ipv6_by_default() -> None:
    """A pod's IP is IPv4 or IPv6 (IPv6-only clusters exist): by default the endpoints
    listen on both, as Go's ``:8080`` does. This machine has IPv6 on loopback."""
    import socket

    assert socket.has_dualstack_ipv6()
    with _bind_http("", 0) as sock:
        sock.setblocking(True)
        port = sock.getsockname()[1]
        for address in ("127.0.0.1", "::1"):
            with socket.create_connection((address, port), timeout=5):
                conn, _ = sock.accept()
                conn.close()


def test_a_signal_repeated_while_stopping_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """kopf handles SIGTERM by setting a once-only future; a second signal while it stops
    (``kill`` twice, Ctrl-C twice) made asyncio report an InvalidStateError, logged as an
    ERROR on a clean stop. The signal is real here (SIGUSR1, twice), so is asyncio's report."""

    async def twice() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_loop_exception)
        flag: asyncio.Future[int] = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, flag.set_result, signal.SIGUSR1)
        try:
            for _ in range(2):
                signal.raise_signal(signal.SIGUSR1)
                for _ in range(5):
                    await asyncio.sleep(0.01)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        assert flag.result() == signal.SIGUSR1

    with caplog.at_level(logging.INFO, logger="secretsync.controller"):
        asyncio.run(twice())
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "signal received again" in caplog.records[0].getMessage()


def test_other_event_loop_errors_are_logged_by_type_only(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO, logger="secretsync.controller"):
            _loop_exception(loop, {"message": "Task exception was never retrieved",
                                   "exception": ValueError("secret-value-in-text")})
    finally:
        loop.close()
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "ValueError" in caplog.text and "secret-value-in-text" not in caplog.text
