"""The `convlens` command line: discovery of the sub-commands (`convlens.commands`), the parser,
and error handling. Each sub-command is a thin wrapper that parses, calls the API and saves.

A user error (bad spec, unknown layer, missing file) prints one line on stderr and exits with
code 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .errors import ConvlensError


# -- entry point ---------------------------------------------------------------------------
def _import_commands() -> None:
    import importlib
    import pkgutil

    from . import commands
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _import_commands()

    parser = argparse.ArgumentParser(
        prog="convlens",
        description="See what a convolutional network has learned. Each sub-command is one "
                    "view; `convlens COMMAND --help` explains its options.")
    parser.add_argument("--version", action="version", version=f"convlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from .commands.common import COMMANDS

    for name, (add, fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=(fn.__doc__ or help_).strip())
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks for errors")
        add(p)
        p.set_defaults(func=fn)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"convlens: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    if not debug:
        warnings.showwarning = _one_line_warnings
    try:
        return int(args.func(args) or 0)
    except ConvlensError as e:
        if debug:
            raise
        print(f"convlens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
