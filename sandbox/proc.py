"""Background processes the sandbox owns: start, record, check and stop them by PID.

Each process runs in its own session (so it outlives `python -m sandbox up` and a Ctrl-C in
the shell that started it) with its output in `.dev/logs/<name>.log`. Its PID and kernel start
time go to `.dev/run/<name>.json`; stopping checks the start time first, so a PID reused by an
unrelated process is never signalled. Stopping signals the process group the sandbox created
(a launcher such as `bao` may have children of its own) and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox import paths


class ComponentError(RuntimeError):
    """A component failed to start or to become healthy; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_path(name: str) -> Path:
    return paths.LOGS / f"{name}.log"


def log_tail(name: str, lines: int = 40) -> str:
    try:
        text = log_path(name).read_text(errors="replace")
    except OSError:
        return f"(no log at {log_path(name)})"
    return "\n".join(text.splitlines()[-lines:])


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22 (starttime) counted after the ")" that closes the command name
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Proc:
    name: str
    pid: int
    start: str

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start and not _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def spawn(name: str, argv: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    paths.ensure_dirs()
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path(name), "wb") as log:
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd or paths.STATE, start_new_session=True,
        )
    start = _start_time(p.pid) or ""
    rec = Proc(name, p.pid, start)
    (paths.RUN / f"{name}.json").write_text(
        json.dumps({"pid": p.pid, "start": start, "argv": argv})
    )
    return rec


def recorded() -> list[Proc]:
    out = []
    if paths.RUN.is_dir():
        for f in sorted(paths.RUN.glob("*.json")):
            try:
                d = json.loads(f.read_text())
                out.append(Proc(f.stem, int(d["pid"]), str(d["start"])))
            except (OSError, ValueError, KeyError):
                continue
    return out


def stop(procs: list[Proc], grace: float = 5.0) -> None:
    """SIGTERM each live recorded process group, then SIGKILL what is left after `grace`."""
    live = [p for p in procs if p.alive()]
    for p in live:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in live):
        time.sleep(0.1)
    for p in live:
        if _group_alive(p):
            _signal_group(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_group_alive(p) for p in live):
        time.sleep(0.05)
    for p in procs:
        (paths.RUN / f"{p.name}.json").unlink(missing_ok=True)


def stop_popen_group(popen: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """Stop a child started in its own process group (``start_new_session``): SIGTERM the
    group, SIGKILL it after ``timeout``; returns the exit code."""
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)
    return popen.returncode


def _signal_group(p: Proc, sig: int) -> None:
    try:
        # the group id is the recorded PID: spawn() made each process a session leader
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(p: Proc) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == p.pid and fields[0] != "Z":  # pgrp
            return True
    return False


def wait_until(name: str, proc: Proc, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until true; fail with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if not proc.alive():
            raise ComponentError(f"{name} exited during start-up; log tail:\n{log_tail(name)}")
        if time.monotonic() > deadline:
            raise ComponentError(
                f"{name} not healthy after {timeout:.0f}s; log tail:\n{log_tail(name)}"
            )
        time.sleep(0.1)
