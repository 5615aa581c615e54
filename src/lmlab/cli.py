"""`lmlab <verb>`: parse arguments, call the library, print. Verbs live in lmlab/commands/."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__
from .errors import LmlabError


class Parser(argparse.ArgumentParser):
    """Argument mistakes become one `error:` line (an LmlabError), not argparse's usage block;
    subcommand parsers inherit the class."""

    def error(self, message):
        raise LmlabError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = Parser(prog="lmlab", description="A workbench for small Transformer language models.")
    parser.add_argument("--version", action="version", version=f"lmlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv=None) -> int:
    from . import runtime

    runtime.configure()  # before any large allocation (see lmlab/runtime.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # option types check their ranges here, before any work
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except LmlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lmlab generate ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
