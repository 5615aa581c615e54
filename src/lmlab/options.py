"""Types for command-line options, checked while the command line is parsed: numbers against a
range (config.RANGES where the option sets a config field), so a mistake is one `error:` line.
Used by the verbs (lmlab.commands) and the experiments' own options alike."""
from __future__ import annotations

import argparse
import dataclasses

from . import config
from .errors import LmlabError


def _typed(kind, check):
    """An argparse type: parse with `kind` (its ValueError is argparse's "invalid int value"), then check."""
    def parse(text: str):
        value = kind(text)
        try:
            check(value)
        except LmlabError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = kind.__name__
    return parse


def field_type(field: str):
    """The type of an option that sets config field `field`: refused exactly as `--set field=...` is."""
    section, key = field.split(".")
    declared = {f.name: f.type for f in dataclasses.fields(getattr(config.Config(), section))}[key]
    kind = {"int": int, "float": float, "str": str}[declared if isinstance(declared, str) else declared.__name__]
    return _typed(kind, lambda value: config.check_field(field, value))


def ranged(kind, allowed: config.Range):
    """The type of a numeric option that sets no config field."""
    def check(value):
        if value not in allowed:
            raise LmlabError(f"must be {allowed}, got {value!r}")

    return _typed(kind, check)


COUNT = ranged(int, config.COUNT)          # an int >= 1
NONNEG_INT = ranged(int, config.NONNEG)    # an int >= 0 (0 usually: all, or off)
NONNEG_FLOAT = ranged(float, config.NONNEG)
POSITIVE_FLOAT = ranged(float, config.POSITIVE)
HELD_OUT = ranged(float, config.Range(0, 1, low_open=True, high_open=True))  # a fraction strictly inside (0, 1)
