"""`python -m sandbox build|up|down|status|env`: the sandbox behind `make dev` / `make dev-down`."""

from __future__ import annotations

import argparse
import sys

from sandbox import builder, launcher, paths, proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    ap.add_argument("command", choices=["build", "up", "down", "status", "env"])
    args = ap.parse_args(argv)
    if args.command == "build":
        try:
            took = launcher.build_all()
        except builder.BuildError as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 1
        for name, secs in took.items():
            print(f"sandbox: {name:12} {secs:7.1f}s")
        return 0
    if args.command == "up":
        try:
            launcher.up()
            launcher.PIN_FILE.touch()
        except (proc.ComponentError, builder.BuildError) as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        stopped = launcher.down()
        print(f"sandbox: stopped {', '.join(stopped) if stopped else 'nothing'}; state removed")
        return 0
    if args.command == "status":
        cfg = launcher.load()
        if cfg is None:
            print("sandbox: not running (no .dev/state.json)")
            return 1
        pids = {p.name: p.pid for p in proc.recorded()}
        report = launcher.health(cfg)
        for name, state in report.items():
            print(f"{name:26} {state:10} pid={pids.get(name, '-')}  log={proc.log_path(name)}")
        return 0 if all(v == "healthy" for v in report.values()) else 1
    # env
    try:
        sys.stdout.write(paths.ENV_FILE.read_text())
    except OSError:
        print("sandbox: no .dev/env; run `make dev`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
