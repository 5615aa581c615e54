"""Argument helpers shared by several verbs.

Every option is checked while the command line is parsed, before any work: numbers against a
range (the config field's own range in config.RANGES where the option sets a field), paths for
being there and of the right kind. A mistake is one `error:` line (lmlab.cli.Parser).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .. import config
from ..errors import LmlabError
from ..options import COUNT, NONNEG_FLOAT, NONNEG_INT, POSITIVE_FLOAT, field_type, ranged  # noqa: F401


def add_config_args(p) -> None:
    p.add_argument("-c", "--config", help="TOML file or preset name in configs/ (tiny, demo, shakespeare-char)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field (repeatable)")


def add_run_args(p, device: bool = True, dtype: str | None = None, dtype_default: str | None = None,
                 metavar: str = "RUN_OR_CKPT", help: str = "a run directory (its latest checkpoint) or a checkpoint",
                 **run_kw) -> None:
    """The RUN argument every verb that reads a run takes; `--device` (default auto, as in
    train.device) where it computes; `--dtype` (checked like generate.dtype) where `dtype` is its help."""
    p.add_argument("run", metavar=metavar, type=run_path, help=help, **run_kw)
    if device:
        p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N")
    if dtype:
        p.add_argument("--dtype", type=field_type("generate.dtype"), default=dtype_default, help=dtype)




def existing(what: str, directory: bool = False, stdin: bool = False):
    """The type of an argument naming a file (or a directory) to read; '-' = standard input where `stdin`."""
    def parse(text: str) -> str:
        if stdin and text == "-":
            return text
        p = Path(text)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{what} {text} does not exist")
        if directory and not p.is_dir():
            raise argparse.ArgumentTypeError(f"{what} {text} is a file, not a directory")
        if not directory and p.is_dir():
            raise argparse.ArgumentTypeError(f"{what} {text} is a directory, not a file")
        return text

    parse.__name__ = what
    return parse


run_path = existing("run or checkpoint", directory=True)


def output_dir(text: str) -> str:
    """A directory to write into: refused if it is an existing file."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a directory")
    return text


def new_path(text: str) -> str:
    """A file or directory to create: refused if anything is there already."""
    if Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} already exists; remove it or choose another path")
    return text


def output_file(text: str) -> str:
    """A file to write: refused if it is a directory, or its directory does not exist."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not p.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory of {text} does not exist")
    return text


def writing_into(path):
    """The lock of the run directory that holds `path`, if any (e.g. a kNN datastore made inside a
    run); a null context elsewhere."""
    from ..checkpoint import CKPT_DIR, run_lock

    for parent in Path(path).resolve().parents:
        if (parent / CKPT_DIR).is_dir():
            return run_lock(parent)
    return contextlib.nullcontext()


def load_model_arg(path: str, device: str = "auto"):
    from ..checkpoint import load_model
    from ..device import pick_device

    return load_model(path, pick_device(device))


def print_json(obj) -> None:
    from ..jsonio import dumps

    print(dumps(obj, indent=1, ensure_ascii=False))


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LmlabError(f"{what} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from None


def read_text_file(path: str, what: str = "text file") -> str:
    p = Path(path)
    if p.is_dir():
        raise LmlabError(f"{what} {path} is a directory, not a file")
    if not p.is_file():
        raise LmlabError(f"{what} {path} not found")
    return decode_utf8(p.read_bytes(), f"{what} {path}")


def read_stdin_text() -> str:
    return decode_utf8(sys.stdin.buffer.read(), "standard input")
