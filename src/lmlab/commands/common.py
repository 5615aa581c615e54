"""Argument helpers shared by several verbs."""
from __future__ import annotations

import json
import sys

from ..errors import LmlabError


def add_config_args(p) -> None:
    p.add_argument("-c", "--config", help="TOML file or preset name in configs/ (tiny, demo, shakespeare-char)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field (repeatable)")


def load_model_arg(path: str, device: str = "cpu"):
    from ..checkpoint import load_model
    from ..device import pick_device

    return load_model(path, pick_device(device))


def print_json(obj) -> None:
    print(json.dumps(obj, indent=1, ensure_ascii=False))


def read_text_file(path: str) -> str:
    from pathlib import Path

    from ..data.corpora import read_file

    p = Path(path)
    if not p.is_file():
        raise LmlabError(f"{path} not found")
    return read_file(p)


def read_stdin_text() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LmlabError(f"standard input is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from None
