"""Every network call has a total deadline (issue 21, item 6).

Two hostile servers on 127.0.0.1: one accepts connections and never answers, one answers
one byte per second (a per-read timeout never fires on it). Each command that reaches the
network gives up after ``--timeout`` seconds with one line naming what timed out, exit 1.
The tests use ``--timeout 2``; the ``run`` fixture's subprocess timeout is the hang guard
(durations are never asserted).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Run, check_one_line_error
from tests.keypairs import keypair

SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: app}
stringData: {password: s3cret-pw}
"""


class _Server:
    """Accepts on 127.0.0.1; ``trickle`` sends an HTTP answer one byte per second, else
    nothing is ever sent."""

    def __init__(self, trickle: bool) -> None:
        self.trickle = trickle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
        try:
            for byte in answer:
                if self.stop.wait(1.0):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(params=["silent", "trickle"])
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    srv = _Server(trickle=request.param == "trickle")
    yield srv
    srv.close()


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t0k3n}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    return path


def _sealed_file(run: Run, tmp_path: Path) -> Path:
    path = tmp_path / "db-sealed.yaml"
    assert run("seal", "--cert", keypair(0).cert_path, "-w", path, input=SECRET).rc == 0
    return path


def test_fetch_cert_and_seal_without_cert_give_up(
    run: Run, tmp_path: Path, server: _Server
) -> None:
    kc = _kubeconfig(tmp_path, server.port)
    res = run("fetch-cert", "--kubeconfig", kc, "--timeout", "2")
    check_one_line_error(res, "ConfigMap secretsync/secretsync-controller-cert", "2 s", "--timeout")
    res = run("seal", "--kubeconfig", kc, "--timeout", "2", input=SECRET)
    check_one_line_error(res, "ConfigMap", "--timeout")
    assert res.out == ""


def test_cert_url_has_a_total_deadline(run: Run, server: _Server) -> None:
    url = f"http://127.0.0.1:{server.port}/cert.pem"
    res = run("seal", "--cert", url, "--timeout", "2", input=SECRET)
    check_one_line_error(res, url, "--timeout")


def test_validate_gives_up(run: Run, tmp_path: Path, server: _Server) -> None:
    sealed = _sealed_file(run, tmp_path)
    url = f"http://127.0.0.1:{server.port}"
    res = run("validate", "--controller-url", url, "--timeout", "2", sealed)
    check_one_line_error(res, f"{url}/v1/verify", "--timeout")
    kc = _kubeconfig(tmp_path, server.port)
    res = run("validate", "--kubeconfig", kc, "--timeout", "2", sealed)
    check_one_line_error(res, "/v1/verify", "via the API server", "--timeout")


def test_reencrypt_and_keys_import_give_up(run: Run, tmp_path: Path, server: _Server) -> None:
    sealed = _sealed_file(run, tmp_path)
    before = sealed.read_bytes()
    kc = _kubeconfig(tmp_path, server.port)
    key = keypair(0).key_path
    res = run("reencrypt", "--private-key", key, "--kubeconfig", kc, "--timeout", "2", sealed)
    check_one_line_error(res, "ConfigMap", "--timeout")
    url = f"http://127.0.0.1:{server.port}"
    res = run("reencrypt", "--cluster", "--controller-url", url, "--timeout", "2", sealed)
    check_one_line_error(res, "/v1/rotate", "--timeout")
    assert sealed.read_bytes() == before
    res = run("keys", "import", "--kubeconfig", kc, "--timeout", "2", key)
    check_one_line_error(res, "--timeout")
    assert "PRIVATE KEY" not in res.err


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "soon"])
def test_timeout_must_be_positive_seconds(run: Run, bad: str) -> None:
    res = run("fetch-cert", "--timeout", bad)
    assert res.rc == 2 and "--timeout" in res.err


def test_timeout_defaults_to_30_seconds(run: Run) -> None:
    for command in ("seal", "fetch-cert", "validate", "reencrypt"):
        res = run(command, "--help")
        assert res.rc == 0 and "--timeout" in res.out and "30" in res.out, command


def test_a_slow_but_complete_answer_within_the_deadline_is_fine(run: Run) -> None:
    """The deadline is total, not a cut-off on slowness: a certificate served in pieces
    well within it is accepted."""
    cert = keypair(0).cert_path.read_bytes()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def serve() -> None:
        conn, _ = sock.accept()
        conn.recv(65536)
        answer = b"HTTP/1.0 200 OK\r\n\r\n" + cert
        for i in range(0, len(answer), len(answer) // 3 + 1):
            conn.sendall(answer[i : i + len(answer) // 3 + 1])
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        res = run("seal", "--cert", f"http://127.0.0.1:{port}/c.pem", "--timeout", "60",
                  input=SECRET)  # fmt: skip
        assert res.rc == 0, res.err
        assert "SealedSecret" in res.out
    finally:
        sock.close()
