"""The `proteins` corpus: real protein sequences fetched from the package index.

pyhmmer's wheel (MIT licensed) ships, as test data, the predicted proteome of one bacterial
genome assembly (ENA project PRJEB85, sample 938293, contig set HG003687; genes called by
Prodigal): 2,100 proteins, about 730,000 residues. The wheel is fetched once with `pip download`
(never installed) for one fixed platform tag, so every machine reads the same file; only that
FASTA member is read. One Document per protein, the stop '*' removed.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .corpora import Document, fetch_from_index

PACKAGE = "pyhmmer==0.12.3"
WHEEL = "pyhmmer-0.12.3-*.whl"
MEMBER = "pyhmmer/tests/data/seqs/938293.PRJEB85.HG003687.faa"
PLATFORM = ["--only-binary", ":all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
            "--implementation", "cp"]


def parse_fasta(text: str) -> list[Document]:
    docs, name, lines = [], None, []
    for line in text.splitlines():
        if line.startswith(">"):
            if name is not None:
                docs.append(Document(name, "".join(lines).rstrip("*")))
            name, lines = line[1:].split()[0] if line[1:].split() else f"seq{len(docs)}", []
        elif line.strip():
            lines.append(line.strip())
    if name is not None:
        docs.append(Document(name, "".join(lines).rstrip("*")))
    return docs


def proteome(cache: Path) -> list[Document]:
    wheel = fetch_from_index(cache, PACKAGE, WHEEL, PLATFORM, "the protein corpus")
    with zipfile.ZipFile(wheel) as z:
        text = z.read(MEMBER).decode("ascii")
    return parse_fasta(text)
