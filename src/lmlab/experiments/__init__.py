"""Paper reproductions, run as `lmlab experiment NAME`.

Each module here defines NAME (the CLI name), HELP (one line), `add_arguments(parser)` and
`run(args) -> int`; they are discovered automatically.
"""
from __future__ import annotations

import importlib
import pkgutil


def discover() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return found
