"""The ``secretsync`` command: a small static table of subcommands, each imported lazily.

Startup time is a feature: ``secretsync seal`` must start about as fast as importing
``cryptography.x509`` and ``yaml``. So this module imports only argparse, builds the parser
with every command's *name* and one-line help, and imports the chosen command's module alone
(``kubernetes``/``kopf`` are never loaded on the seal path).

Adding a command = one line in ``COMMANDS`` + one module exposing
``add_arguments(parser)`` and ``run(args) -> int``. A two-word name (``"keys generate"``) is
a subcommand of a group listed in ``GROUPS``.

Errors: ``SecretSyncError`` and expected I/O errors become one line
``secretsync: error: <what>: <problem>`` on stderr and exit 1; usage errors exit 2 (argparse);
anything unexpected also becomes one line (never a traceback) -- set ``SECRETSYNC_DEBUG=1`` to
see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

PROG = "secretsync"

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "seal": ("secretsync.cli.seal", "encrypt Secret(s) into SealedSecret(s) with a certificate"),
    "unseal": ("secretsync.cli.unseal", "decrypt SealedSecret(s) with private keys (recovery)"),
    "reencrypt": (
        "secretsync.cli.reencrypt",
        "re-seal SealedSecret files/trees in place to a new certificate",
    ),
    "fetch-cert": ("secretsync.cli.fetch_cert", "print the controller's sealing certificate"),
    "keys generate": (
        "secretsync.cli.keys_generate",
        "generate an RSA-4096 sealing key and self-signed certificate",
    ),
    "controller": ("secretsync.controller.main", "run the controller (needs [controller] extra)"),
    "keys import": ("secretsync.cli.keys_import", "add existing sealing keys to the cluster"),
    "validate": ("secretsync.cli.validate", "ask the controller whether SealedSecrets unseal"),
}

GROUPS: dict[str, str] = {
    "keys": "manage sealing keys",
}


def _version() -> str:
    from secretsync import __version__

    return __version__


def _selected(argv: list[str]) -> str | None:
    """The table entry named by argv (before parsing), so only its module is imported."""
    words = [a for a in argv[:2]]
    if not words or words[0].startswith("-"):
        return None
    if words[0] in GROUPS:
        if len(words) > 1 and f"{words[0]} {words[1]}" in COMMANDS:
            return f"{words[0]} {words[1]}"
        return None
    return words[0] if words[0] in COMMANDS else None


def _load(name: str) -> ModuleType:
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = " (install secretsync[controller])" if name == "controller" else ""
        raise _CommandUnavailable(f"command {name!r} is not available: {missing}{hint}") from exc


class _CommandUnavailable(Exception):
    pass


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter asks ``shutil`` for the terminal width (importing shutil, bz2,
    lzma: ~2 ms) every time a parser is built; ask ``os`` directly instead."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, max(width, 20))


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sealed Secrets and External Secrets for GitOps clusters.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, (_module, help_text) in COMMANDS.items():
        group, _, leaf = name.rpartition(" ")
        if group:
            if group not in groups:
                gp = sub.add_parser(
                    group,
                    help=GROUPS.get(group, ""),
                    description=GROUPS.get(group),
                    formatter_class=_Formatter,
                )
                groups[group] = gp.add_subparsers(
                    dest=f"{group}_command", metavar="COMMAND", required=True
                )
            target = groups[group]
        else:
            target = sub
        p = target.add_parser(
            leaf, help=help_text, description=help_text, formatter_class=_Formatter
        )
        if name == selected:
            module = _load(name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def error(message: str) -> int:
    """Print the one-line error and return exit code 1."""
    line = " ".join(message.split())  # one line, whatever the message holds
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        selected = _selected(args_list)
        parser = build_parser(selected)
        args = parser.parse_args(args_list)
        run = getattr(args, "_run", None)
        if run is None:  # unreachable with required subparsers; keep argparse's contract
            parser.error("no command given")
        result = run(args)
        return int(result)
    except _CommandUnavailable as exc:
        return error(str(exc))
    except KeyboardInterrupt:
        return error("interrupted") + 129
    except BrokenPipeError:
        # the reader went away (``secretsync seal ... | head``): not our error
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return 1
    except Exception as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    from secretsync.errors import SecretSyncError

    if os.environ.get("SECRETSYNC_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, SecretSyncError):
        return error(exc.message)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename else ""
        text = exc.strerror or str(exc)
        return error(f"{where}: {text}" if where else text)
    # Backstops: the loaders refuse deep nesting and inputs over 64 MiB first.
    if isinstance(exc, RecursionError):
        return error("the input nests too deeply")
    if isinstance(exc, MemoryError):
        return error("out of memory (is the input too large?)")
    # The text of an unexpected exception could quote input (secret) bytes: name the type only.
    return error(
        f"unexpected {type(exc).__name__} (a bug; rerun with SECRETSYNC_DEBUG=1 for details)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
