"""Settings of a task generator: typed parameters with ranges, presets, `key=value` overrides.

Every range is checked before anything is generated, so a bad `--set` costs nothing and names
the valid values; the settings that made a task are written next to it (task.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import LmlabError


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    lo: float | None = None      # inclusive bounds for numbers
    hi: float | None = None
    choices: tuple = ()          # allowed values for strings
    help: str = ""

    def parse(self, text: str):
        kind = type(self.default)
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return text.lower() in ("true", "1")
            if kind is tuple:  # a comma-separated list of integers
                return tuple(int(x) for x in text.split(",") if x.strip())
            return kind(text)
        except ValueError:
            raise LmlabError(f"{self.name}={text!r}: expected {_kind_name(self.default)}") from None

    def check(self, value) -> None:
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise LmlabError(f"{self.name} must list at least one value")
        for v in values:
            if self.choices and v not in self.choices:
                raise LmlabError(f"{self.name}={v!r}: valid values are {', '.join(map(str, self.choices))}")
            if self.lo is not None and v < self.lo or self.hi is not None and v > self.hi:
                raise LmlabError(f"{self.name}={v}: must be in [{_num(self.lo)}, {_num(self.hi)}]")


def _num(x) -> str:
    return "-inf" if x is None else str(int(x)) if float(x).is_integer() else str(x)


def _kind_name(default) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            tuple: "comma-separated integers"}[type(default)]


# Sizes and seed: every generator has them.
COMMON = (
    Param("seed", 0, 0, 2**32 - 1, help="random seed: the same seed gives byte-identical files"),
    Param("n_train", 2000, 0, 10_000_000, help="examples in train.jsonl"),
    Param("n_validation", 200, 0, 10_000_000, help="examples in validation.jsonl"),
    Param("n_test", 200, 1, 10_000_000, help="examples in test.jsonl"),
)


@dataclass
class Spec:
    params: tuple
    presets: dict = field(default_factory=dict)   # name -> {key: value}

    def by_name(self) -> dict:
        return {p.name: p for p in COMMON + self.params}

    def defaults(self) -> dict:
        return {p.name: p.default for p in COMMON + self.params}

    def resolve(self, overrides: list[str], task: str) -> dict:
        """Defaults, then a `preset=NAME` if given, then the other overrides; all checked."""
        known = self.by_name()
        pairs = []
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise LmlabError(f"--set {item!r}: expected key=value")
            if key != "preset" and key not in known:
                raise LmlabError(f"{task}: unknown setting {key!r}; valid: preset, {', '.join(known)}")
            pairs.append((key, value.strip()))
        settings = self.defaults()
        for key, value in pairs:
            if key == "preset":
                if value not in self.presets:
                    valid = ", ".join(self.presets) or "none"
                    raise LmlabError(f"{task}: unknown preset {value!r}; valid: {valid}")
                settings.update(self.presets[value])
        try:
            for key, value in pairs:
                if key != "preset":
                    settings[key] = known[key].parse(value)
            for key, value in settings.items():
                known[key].check(value)
        except LmlabError as e:
            raise LmlabError(f"{task}: {e}") from None
        return settings
