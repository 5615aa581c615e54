"""Accuracy of a model on a task split, with a Wilson 95% interval, overall and per length.

`exact` tasks are decoded greedily for as many tokens as `delimiter + target` has, and an
answer counts when the decoded text is exactly that; `choice` tasks count when the target is the
likeliest of the candidates (the task's, or the example's own) by total log-likelihood
(`accuracy`; `accuracy_norm` divides by each candidate's UTF-8 bytes). The context is the
input's ids (the end-of-text id for an empty input), as lm-eval's TemplateLM builds it.
Examples are independent draws of the generator, so the Wilson interval applies (for
`classify`/`retrieval`, passages of one region may overlap, which makes it a little narrow).
"""
from __future__ import annotations

import math
from pathlib import Path

from ...data.task_files import Example, TaskInfo, is_task_dir, read_info, read_split
from ...errors import LmlabError
from ..likelihood import continuation_scores, greedy_tokens

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval for k successes in n trials."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [0.0 if k == 0 else max(0.0, mid - half), 1.0 if k == n else min(1.0, mid + half)]


def summary(hits: list[bool]) -> dict:
    k, n = sum(hits), len(hits)
    return {"accuracy": k / n if n else 0.0, "ci95": wilson(k, n), "n": n}


def load(task: str, split: str = "test") -> tuple[TaskInfo, list[Example]]:
    """A task directory's split, or (by generator name) the split its default settings make."""
    from . import GENERATORS

    if is_task_dir(task):
        return read_info(task), read_split(Path(task) / f"{split}.jsonl")
    if task in GENERATORS:
        gen = GENERATORS[task]
        settings = gen.settings([f"n_{s}=0" for s in ("train", "validation", "test") if s != split])
        return gen.info(settings), gen.make(settings)[split]
    raise LmlabError(f"--task {task!r} is neither a task directory (with {split}.jsonl) nor a known task; "
                     f"known tasks: passkey (the long-context eval), {', '.join(GENERATORS)}")


def _context(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text) or [tokenizer.eot_id]


def exact_hits(model, tokenizer, examples: list[Example], delimiter: str, batch_size: int) -> list[bool]:
    answers = [delimiter + ex.target for ex in examples]
    prompts = [_context(tokenizer, ex.input) for ex in examples]
    outs = greedy_tokens(model, prompts, [len(tokenizer.encode(a)) for a in answers], batch_size)
    return [tokenizer.decode(out) == a for out, a in zip(outs, answers)]


def choice_hits(model, tokenizer, examples: list[Example], info: TaskInfo, batch_size: int) -> tuple[list, list]:
    pairs, spans = [], []
    for ex in examples:
        candidates = ex.choices or info.choices
        if ex.target not in candidates:
            raise LmlabError(f"an example's target {ex.target!r} is not among the choices {candidates}")
        ctx = _context(tokenizer, ex.input)
        spans.append((len(pairs), candidates))
        pairs += [(ctx, tokenizer.encode(info.delimiter + c)) for c in candidates]
    lls = [ll for ll, _ in continuation_scores(model, pairs, batch_size)]
    hits, hits_norm = [], []
    for ex, (start, candidates) in zip(examples, spans):
        ll = lls[start:start + len(candidates)]
        per_byte = [v / max(1, len((info.delimiter + c).encode("utf-8"))) for v, c in zip(ll, candidates)]
        hits.append(candidates[ll.index(max(ll))] == ex.target)  # ties: the first candidate
        hits_norm.append(candidates[per_byte.index(max(per_byte))] == ex.target)
    return hits, hits_norm


def evaluate(model, tokenizer, info: TaskInfo, examples: list[Example], batch_size: int = 16) -> dict:
    from . import GENERATORS

    if not examples:
        raise LmlabError("the task split has no examples")
    out: dict = {"task": info.name, "scoring": info.scoring}
    if info.scoring == "choice":
        hits, hits_norm = choice_hits(model, tokenizer, examples, info, batch_size)
        out.update(summary(hits))
        out["accuracy_norm"] = summary(hits_norm)["accuracy"]
        out["chance"] = sum(1 / len(ex.choices or info.choices) for ex in examples) / len(examples)
    else:
        hits = exact_hits(model, tokenizer, examples, info.delimiter, batch_size)
        out.update(summary(hits))
    gen = GENERATORS.get(info.name)
    if gen is not None and gen.length_of is not None:
        groups: dict[int, list[bool]] = {}
        for ex, hit in zip(examples, hits):
            groups.setdefault(gen.length_of(ex.input), []).append(hit)
        out["by_length"] = [{"length": n, **summary(h)} for n, h in sorted(groups.items())]
    return out
