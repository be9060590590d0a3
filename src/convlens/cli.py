"""The `convlens` command line: discovery of the sub-commands (`convlens.commands`), the parser,
and error handling. Each sub-command is a thin wrapper that parses, calls the API and saves.

A user error (bad spec, unknown layer, missing file) prints one line on stderr and exits with
code 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .errors import ConvlensError


# -- entry point ---------------------------------------------------------------------------
def _import_commands() -> None:
    import importlib
    import pkgutil

    from . import commands
    from .commands.views import register_views
    from .techniques import all_views
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}")
    register_views(all_views())  # the views whose records need no hand-written command


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _import_commands()

    from .commands.common import COMMANDS, Parser

    parser = Parser(
        prog="convlens",
        description="See what a convolutional network has learned. Each sub-command is one "
                    "view; `convlens COMMAND --help` explains its options.")
    parser.add_argument("--version", action="version", version=f"convlens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    from .techniques import all_views
    place = {v.command: i for i, v in enumerate(all_views())}
    # the views in the seed's order, then the tools (data, demo, layers, report, ...)
    for name in sorted(COMMANDS, key=lambda n: (place.get(n, len(place)), n)):
        add, fn, help_ = COMMANDS[name]
        p = sub.add_parser(name, help=help_, description=(fn.__doc__ or help_).strip())
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks for errors")
        add(p)
        p.set_defaults(func=fn)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())  # one line, whatever the message holds
    print(f"convlens: warning: {text}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    shown = warnings.showwarning
    if not debug:
        warnings.showwarning = _one_line_warnings
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, or a usage error (one line, code 2)
            return int(e.code or 0)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        try:
            return int(args.func(args) or 0)
        except ConvlensError as e:
            if debug:
                raise
            print(f"convlens: error: {e}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `convlens ... | head`: the reader left; not an error
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            return 0
        except KeyboardInterrupt:
            said = getattr(args, "_interrupt_message", None)
            print("convlens: interrupted" + (f"; {said}" if said else "; nothing was saved"),
                  file=sys.stderr)
            return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
