"""Multiple choice on held-out text (lmlab.eval.choice as a task): which of `n_choices` cuts is
the true continuation of a passage. Distractors are cut the same way from elsewhere in the same
document (within WINDOW_SPANS item lengths of the passage); each example carries its own choices.

Of every document of `corpus` the last `heldout` fraction is held out: its first half gives the
validation items, its second half the test items; train items come from the rest. (For a run
trained with data.val_fraction on a one-document corpus such as tinyshakespeare, the held-out
tail is the run's validation split.) Continuations keep their leading whitespace, so the
delimiter is "".

    input  "...the passage"      target " and its end"      choices [" one", " and its end", ...]
"""
from __future__ import annotations

from ...data.corpora import Document, read_corpus
from ...data.task_files import Example
from ...errors import LmlabError
from ..choice import MAX_EXTEND, items_from_documents
from .generator import Generator
from .spec import Param, Spec

WINDOW_SPANS = 40


def prepare(s: dict) -> dict:
    docs = [d for name in s["corpus"].split(",") if name.strip() for d in read_corpus(name.strip())]
    parts: dict[str, list[Document]] = {"train": [], "validation": [], "test": []}
    for d in docs:
        cut = int(len(d.text) * (1 - s["heldout"]))
        mid = cut + (len(d.text) - cut) // 2
        for split, text in (("train", d.text[:cut]), ("validation", d.text[cut:mid]), ("test", d.text[mid:])):
            parts[split].append(Document(d.name, text))
    return {"s": s, "parts": parts}


def _stretch(rng, doc: Document, s: dict) -> Document:
    """A random stretch of the document, WINDOW_SPANS items long: choices are cut from near the
    passage (still never overlapping it), and cutting stays fast on long books."""
    n = WINDOW_SPANS * (s["context_chars"] + s["continuation_chars"] + MAX_EXTEND)
    start = rng.randrange(max(1, len(doc.text) - n + 1))
    return Document(doc.name, doc.text[start:start + n])


def draw(rng, state: dict, split: str) -> Example:
    s = state["s"]
    docs = state["parts"][split]
    for _ in range(100):
        doc = _stretch(rng, docs[rng.randrange(len(docs))], s)
        try:
            items = items_from_documents([doc], 1, s["n_choices"], s["context_chars"], s["continuation_chars"],
                                         seed=rng.randrange(2**32))
        except LmlabError:
            raise LmlabError(f"continuation: the {split} part of {doc.name} is too short for items of these "
                             f"sizes; lower context_chars / continuation_chars or raise heldout") from None
        if items:
            it = items[0]
            return Example(it.context, it.choices[it.label], list(it.choices))
    raise LmlabError(f"continuation: could not cut {s['n_choices']} distinct choices from the {split} text")


GENERATOR = Generator(
    name="continuation",
    summary="held-out passage of a shared corpus; choose its true continuation",
    spec=Spec(params=(
        Param("corpus", "tinyshakespeare", help="comma-separated corpora (tinyshakespeare, english-prose, "
              "multilingual, or paths)"),
        Param("heldout", 0.1, 0.01, 0.9, help="trailing fraction of each document held out for validation + test"),
        Param("context_chars", 200, 1, 100_000, help="characters of passage"),
        Param("continuation_chars", 48, 1, 10_000, help="characters of each choice (extended to a word's end)"),
        Param("n_choices", 4, 2, 26, help="choices per item"),
    )),
    draw=draw, scoring="choice", prepare=prepare, delimiter="",
)
