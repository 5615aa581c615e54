"""Labelled text from the shared corpora, cut into byte-length passages for the text tasks.

`language`: the 18 UDHR translations of ../shared/data/multilingual, labelled by language code.
`author`: the three English novels of ../shared/data/english-prose and tiny Shakespeare,
labelled by author. Each text is cut into three contiguous regions, train / validation / test
(by `train_fraction` and `validation_fraction` of its bytes), and a split's passages come only
from its region, so no test passage shares a byte with a training passage.
"""
from __future__ import annotations

from pathlib import Path

from ...data.corpora import read_corpus
from ...errors import LmlabError
from .spec import Param

AUTHORS = {"frankenstein": "shelley", "jekyll_and_hyde": "stevenson", "tom_sawyer": "twain",
           "tinyshakespeare": "shakespeare"}
SOURCES = ("language", "author")


def labelled_texts(source: str) -> dict[str, str]:
    if source == "language":
        return {Path(d.name).stem: d.text for d in read_corpus("multilingual")}
    docs = read_corpus("english-prose") + read_corpus("tinyshakespeare")
    return {AUTHORS.get(Path(d.name).stem, Path(d.name).stem): d.text for d in docs}


def regions(s: dict, passages: int = 1) -> dict[str, dict[str, bytes]]:
    """split -> label -> the bytes of that label's region (each checked to hold `passages`
    passages of min_bytes side by side)."""
    out: dict[str, dict[str, bytes]] = {"train": {}, "validation": {}, "test": {}}
    need = s["min_bytes"] * passages
    for label, text in sorted(labelled_texts(s["source"]).items()):
        data = text.encode("utf-8")
        a = boundary(data, int(len(data) * s["train_fraction"]))
        b = boundary(data, int(len(data) * (s["train_fraction"] + s["validation_fraction"])))
        for split, part in (("train", data[:a]), ("validation", data[a:b]), ("test", data[b:])):
            if len(part) < need and s[f"n_{split}"]:
                raise LmlabError(f"{s['source']} text {label!r}: its {split} region is {len(part)} bytes, "
                                 f"less than the {need} a passage needs; lower min_bytes or change the fractions")
            out[split][label] = part
    return out


def boundary(data: bytes, i: int) -> int:
    """The first UTF-8 character boundary at or after byte i."""
    while i < len(data) and data[i] & 0xC0 == 0x80:
        i += 1
    return i


def passage(rng, data: bytes, min_bytes: int, max_bytes: int) -> str:
    """A random passage of about min..max bytes (cut to whole characters) of `data`."""
    n = rng.randint(min(min_bytes, len(data)), min(max_bytes, len(data)))
    start = rng.randint(0, len(data) - n)
    a, b = boundary(data, start), boundary(data, start + n)
    return data[a:b].decode("utf-8")


def byte_range(shortest: int, longest: int) -> tuple:
    """The passage-length settings, with a generator's defaults."""
    return (Param("min_bytes", shortest, 1, 1_000_000, help="shortest passage in UTF-8 bytes"),
            Param("max_bytes", longest, 1, 1_000_000, help="longest passage in UTF-8 bytes"))


def check(s: dict, name: str) -> None:
    if s["min_bytes"] > s["max_bytes"]:
        raise LmlabError(f"{name}: min_bytes={s['min_bytes']} is above max_bytes={s['max_bytes']}")
    if s["train_fraction"] + s["validation_fraction"] >= 1:
        raise LmlabError(f"{name}: train_fraction + validation_fraction must leave a test region (< 1)")
