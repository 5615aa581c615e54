"""The forgetting and moral parts of `lmlab experiment knowledge`.

forgetting (after "unforgettable generalisation" of random-label forgetting): fine-tune the base
model on three label tasks at once (eval/tasks/labelled.py), then fine-tune the result on one
task's training split with random labels; accuracy on that forget set (against its true labels),
on held-out examples of the same task and on the other tasks, and linear probes per layer on the
forgotten task's held-out passages, before and after.

moral (after Schramowski et al. 2022): the first principal component of sentence embeddings of
the packaged normative / non-normative phrases (analysis/moral.py), its agreement with held-out
labels for the packaged sentence encoder and for the base model's mean-pooled states, and
re-ranking sampled continuations by the direction's score.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TASK_NAMES = ("language", "author", "shuffled")
PROMPTS = ("I will", "Tomorrow I want to", "He decided to")  # steering: continuations of these are re-ranked


def accuracy(model, tokenizer, task, rows) -> float:
    from ..eval.tasks import labelled
    from ..eval.tasks.score import evaluate

    return evaluate(model, tokenizer, labelled.info(task.name, {}), labelled.examples(task, rows))["accuracy"]


def task_accuracies(model, tokenizer, tasks, by_task, forget: str, random_rows) -> dict:
    out = {f"{t.name}_test": accuracy(model, tokenizer, t, by_task[t.name]["test"]) for t in tasks}
    ft = next(t for t in tasks if t.name == forget)
    out["forget_set_true"] = accuracy(model, tokenizer, ft, by_task[forget]["train"])
    out["forget_set_random"] = accuracy(model, tokenizer, ft, random_rows)
    return out


def probe_task(model, tokenizer, task, rows, seed: int) -> dict:
    from ..analysis.probes import pooled_states, probe_layers

    states = pooled_states(model, tokenizer, [t for t, _ in rows])
    return probe_layers(states, [task.labels.index(lab) for _, lab in rows], range(states.shape[0]), seed=seed)


def forgetting_seed(args, work: Path, seed: int, base: Path, echo) -> dict:
    import shutil

    from ..checkpoint import load_model
    from ..eval.tasks import labelled
    from ..train.finetune import finetune
    from . import common

    tasks = [labelled.get(n) for n in TASK_NAMES]
    forget = labelled.get(args.forget_task)
    _, tok, cfg = load_model(base)
    max_bytes = labelled.fitting_bytes(tasks, cfg.model.context)
    by_task = labelled.splits_of(tasks, args.task_train, args.task_test, seed, max_bytes)
    # the forget set with the random labels it is trained on (as write_mixture below draws them)
    random_rows = labelled.splits_of([forget], args.task_train, args.task_test, seed, max_bytes,
                                     randomise=True)[forget.name]["train"]
    solved, forgot = work / f"solved-{seed}", work / f"forgot-{forget.name}-{seed}"
    for run in (solved, forgot):
        if run.exists() and not common.has_checkpoint(run):
            shutil.rmtree(run)
    if not common.has_checkpoint(solved):
        labelled.write_mixture(solved / "task", tasks, args.task_train, args.task_test, seed, max_bytes)
        finetune(base, solved, solved / "task", args.finetune_steps, args.finetune_lr, 16, seed, args.device,
                 echo=common.quiet, note={"task": ",".join(TASK_NAMES)})
    if not common.has_checkpoint(forgot):
        labelled.write_mixture(forgot / "task", [forget], args.task_train, args.task_test, seed, max_bytes,
                               randomise=True)
        finetune(solved, forgot, forgot / "task", args.forget_steps, args.finetune_lr, 16, seed, args.device,
                 echo=common.quiet, note={"task": forget.name, "random_labels": True})
    out = {"forget_task": forget.name, "chance": {t.name: 1 / len(t.labels) for t in tasks},
           "random_agree_true": float(np.mean([a[1] == b[1] for a, b in zip(random_rows, by_task[forget.name]["train"])])),
           "stages": {}, "probes": {}}
    probe_rows = by_task[forget.name]["test"]
    for stage, run in (("base", base), ("solved", solved), ("forgot", forgot)):
        model, tok, _ = load_model(run)
        out["stages"][stage] = task_accuracies(model, tok, tasks, by_task, forget.name, random_rows)
        out["probes"][stage] = probe_task(model, tok, forget, probe_rows, seed)
        echo(f"forgetting seed {seed} {stage}: {out['stages'][stage]} probes {out['probes'][stage]['accuracy']}")
    return out


def moral_seed(args, seed: int, base: Path, echo) -> dict:
    import torch

    from ..analysis import moral
    from ..checkpoint import load_model
    from ..eval import text_features

    rows = moral.load_phrases()
    texts = [moral.TEMPLATE.format(p) for p, _ in rows]
    labels = [lab for _, lab in rows]
    model, tok, _ = load_model(base)
    embedders = {"lmlab": moral.lm_embedder(model, tok)}
    if text_features.available():
        embedders["minilm"] = lambda batch: torch.from_numpy(text_features.sentence_features(batch))
    out = {"phrases": len(rows), "embedders": {}, "encoder_missing": "" if "minilm" in embedders else text_features.MISSING}
    embedded = {}
    for name, embed in embedders.items():
        embedded[name] = embed(texts)
        out["embedders"][name] = moral.held_out(embedded[name], labels, args.moral_splits, seed=seed)
        accs = [r["agreement"] for r in out["embedders"][name]["splits"]]
        echo(f"moral seed {seed} {name}: held-out agreement {np.mean(accs):.3f}")
    # steering: sample continuations, keep those the best direction scores at or above its threshold
    judge = "minilm" if "minilm" in embedded else "lmlab"
    direction = moral.fit_direction(embedded[judge], labels)
    from ..infer.generate import generate

    candidates = []
    for prompt in PROMPTS:
        for k in range(args.moral_candidates):
            cont = generate(model, tok, prompt + " ", max_new_tokens=24, temperature=0.9, seed=seed * 1000 + k, stop=("\n",))
            candidates.append(prompt + " " + " ".join(cont.split()))
    scores = embedders[judge](candidates)
    s = direction.score(scores)
    kept, rejected = moral.rerank(candidates, s, direction.threshold)
    labelled_s = direction.score(embedded[judge])
    out["steering"] = {"judge": judge, "candidates": len(candidates), "kept": len(kept),
                       "mean_score_all": float(s.mean()), "mean_score_kept": float(s[s >= direction.threshold].mean())
                       if kept else None, "threshold": direction.threshold,
                       "labelled_means": {"+1": float(labelled_s[torch.tensor(labels) == 1].mean()),
                                          "-1": float(labelled_s[torch.tensor(labels) == -1].mean())},
                       "best": kept[:3], "worst": rejected[-3:]}
    out["phrase_scores"] = {"judge": judge, "scores": [float(v) for v in labelled_s], "labels": labels}
    return out
