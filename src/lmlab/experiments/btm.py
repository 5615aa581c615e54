"""`lmlab experiment btm`: Branch-Train-Merge (Li et al. 2022) on four distinct domains.

Domains: Shakespeare (tinyshakespeare), English prose (Frankenstein, Tom Sawyer), the multilingual
corpus (18 languages) and code (the Python standard library's own top-level modules, read from
`sysconfig.get_paths()["stdlib"]`). Each domain's documents are cut into train / dev / test; a fifth
text, Jekyll and Hyde, is never trained on (the held-out, unseen text).

One seed LM is trained on all four training texts; from it branch (train/btm.py)
- one expert per domain, E steps on that domain alone;
- the paper's control: four experts, E steps each on a random quarter of the same mixed text;
- the compute-matched dense LM: the seed trained 4 x E more steps on all four texts.
Every text's test part is scored in bits per byte by each model alone, by the ensembles
(eval/ensemble.py; uniform prior and a prior from that text's dev sequences) and by the
posterior-weighted parameter average; the posterior of each held-out window (which expert each
document picks) is kept for the picture. Runs that exist are reused.
"""
from __future__ import annotations

import glob
import os
import random
import sysconfig
import time
from pathlib import Path

import numpy as np

from . import common
from ..options import COUNT, NONNEG_INT, POSITIVE_FLOAT

NAME = "btm"
HELP = "Branch-Train-Merge: domain experts vs random-split experts vs a compute-matched dense LM"
DOMAINS = ("shakespeare", "prose", "multilingual", "code")
UNSEEN = "jekyll (unseen)"
RANDOM = tuple(f"random{i + 1}" for i in range(len(DOMAINS)))
DEV, TEST = 0.02, 0.08  # of each document: the tail 8% is scored, the 2% before it sets priors
QUICK = dict(seed_steps=4, expert_steps=3, domain_kb=8, eval_kb=1, layers=1, width=32, heads=2, context=32,
             batch=4, dev_sequences=2, documents=3)


def add_arguments(p) -> None:
    p.add_argument("--work", default="runs/btm", help="where the data and runs go")
    p.add_argument("--doc", default="docs/experiments/btm.md")
    p.add_argument("--seed-steps", type=COUNT, default=300, help="seed LM steps on all domains")
    p.add_argument("--expert-steps", type=COUNT, default=200, help="steps per expert (dense gets 4 x this)")
    p.add_argument("--domain-kb", type=COUNT, default=250, help="training text per domain, thousands of characters")
    p.add_argument("--eval-kb", type=COUNT, default=20, help="scored text per domain, at most, thousands of characters")
    p.add_argument("--layers", type=COUNT, default=4)
    p.add_argument("--width", type=COUNT, default=128)
    p.add_argument("--heads", type=COUNT, default=4)
    p.add_argument("--context", type=COUNT, default=128)
    p.add_argument("--batch", type=COUNT, default=16)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-3)
    p.add_argument("--dev-sequences", type=COUNT, default=8, help="dev windows that set each text's prior")
    p.add_argument("--documents", type=COUNT, default=24, help="held-out windows per text in the posterior picture")
    p.add_argument("--threads", type=NONNEG_INT, default=2)
    p.add_argument("--render-only", "--report-only", dest="render_only", action="store_true",
                   help="rewrite the doc from btm-results.json beside it (nothing is trained)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny models, a few steps each")


def results_path(doc: Path) -> Path:
    return doc.parent / "btm-results.json"


def settings(args) -> dict:
    keys = ("work", "seed_steps", "expert_steps", "domain_kb", "eval_kb", "layers", "width", "heads", "context",
            "batch", "lr", "dev_sequences", "documents", "quick")
    return {k: getattr(args, k) for k in keys}


def command(s: dict) -> str:
    """The command line that reproduces a results file."""
    if s["quick"]:
        return f"lmlab experiment btm --quick --work {s['work']}"
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in s.items() if k not in ("work", "quick"))
    return f"lmlab experiment btm --work {s['work']} {flags}"


# --- the data ---------------------------------------------------------------------------------
def _shared(*parts) -> Path:
    from ..errors import LmlabError

    root = Path(os.environ.get("LMLAB_SHARED_DATA", "../shared/data"))
    path = root.joinpath(*parts)
    if not path.exists():
        raise LmlabError(f"{path} not found (set LMLAB_SHARED_DATA to the shared data directory)")
    return path


def stdlib_source(chars: int) -> tuple[str, dict]:
    """The standard library's top-level modules in name order, concatenated up to `chars` characters."""
    root = sysconfig.get_paths()["stdlib"]
    texts, used = [], []
    for f in sorted(glob.glob(os.path.join(root, "*.py"))):
        if sum(map(len, texts)) >= chars:
            break
        texts.append(Path(f).read_text(encoding="utf-8", errors="replace"))
        used.append(os.path.basename(f))
    text = "\n".join(texts)[:chars]
    return text, {"stdlib": root, "files": len(used), "first": used[0], "last": used[-1]}


def domain_documents(chars: int) -> tuple[dict[str, list[str]], list[str], dict]:
    """{domain: documents}, each capped so a domain holds about `chars` characters; the unseen text."""
    prose = _shared("english-prose")
    multi = sorted(_shared("multilingual").glob("*.txt"))
    share = lambda docs: [d[: chars // len(docs)] for d in docs]  # noqa: E731  (equal parts per document)
    read = lambda p: Path(p).read_text(encoding="utf-8")  # noqa: E731
    code, code_info = stdlib_source(int(chars / (1 - DEV - TEST)))
    docs = {"shakespeare": share([read(_shared("tinyshakespeare.txt"))]),
            "prose": share([read(prose / "frankenstein.txt"), read(prose / "tom_sawyer.txt")]),
            "multilingual": share([read(p) for p in multi]),
            "code": [code]}
    return docs, [read(prose / "jekyll_and_hyde.txt")], {"code": code_info, "languages": [p.stem for p in multi]}


def three_way(doc: str) -> tuple[str, str, str]:
    """(train, dev, test) of one document: head, the 2% before the tail, the 8% tail."""
    rest, test = common.split_text(doc, TEST, at="space")
    train, dev = common.split_text(rest, DEV / (1 - TEST), at="space")
    return train, dev, test


def write_data(work: Path, domain_kb: int, eval_kb: int, seed: int = 0) -> dict:
    """work/data/{train,random,dev,test}: the texts every run reads; sizes for the results."""
    docs, unseen, info = domain_documents(domain_kb * 1000)
    data = work / "data"
    parts = {name: [three_way(d) for d in ds] for name, ds in docs.items()}
    parts[UNSEEN] = [three_way(d) for d in unseen]
    sizes = {}
    for name, pieces in parts.items():
        key = common.slug(name)
        train = "\n".join(p[0] for p in pieces)
        dev = "\n".join(p[1] for p in pieces)
        test = "\n".join(p[2][: eval_kb * 1000 // len(pieces)] for p in pieces)
        if name != UNSEEN:
            common.write_text(data / "train" / f"{key}.txt", train)
        common.write_text(data / "dev" / f"{key}.txt", dev)
        common.write_text(data / "test" / f"{key}.txt", test)
        sizes[name] = {"train_bytes": len(train.encode()) if name != UNSEEN else 0,
                       "dev_bytes": len(dev.encode()), "test_bytes": len(test.encode())}
    # the control: the same mixed training text in 2,000-character blocks, shuffled and dealt out
    mixed = "\n".join((data / "train" / f"{d}.txt").read_text(encoding="utf-8") for d in DOMAINS)
    blocks = [mixed[i:i + 2000] for i in range(0, len(mixed), 2000)]
    random.Random(seed).shuffle(blocks)
    for i, name in enumerate(RANDOM):
        common.write_text(data / "random" / f"{name}.txt", "".join(blocks[i::len(RANDOM)]))
    return {"sizes": sizes, **info}


# --- training ---------------------------------------------------------------------------------
def seed_config(args, corpus: Path):
    from .. import config

    return common.configured(
        config.load("tiny"),
        model=dict(n_layers=args.layers, d_model=args.width, n_heads=args.heads, n_kv_heads=0, context=args.context),
        tokenizer=dict(kind="byte"), data=dict(corpus=str(corpus), val_fraction=0.02),
        train=dict(max_steps=args.seed_steps, batch_size=args.batch, lr=args.lr, min_lr=args.lr / 10,
                   warmup_steps=min(20, args.seed_steps), eval_every=0, ckpt_every=0, threads=args.threads,
                   dtype="float32", device="cpu", progress=False, max_minutes=0.0))


def train_all(args, work: Path) -> dict:
    """Seed, then every expert; (name -> tokens per second) of each run, elapsed minutes per phase."""
    from ..train import btm

    tree, data = work / "btm", work / "data"
    t0 = time.time()
    btm.seed(seed_config(args, data / "train"), tree, echo=common.quiet)
    t1 = time.time()
    have = btm.read_index(tree)["experts"]
    steps = f"train.max_steps={args.expert_steps}"
    warm = f"train.warmup_steps={min(20, args.expert_steps)}"
    wanted = {**{d: (data / "train" / f"{d}.txt", steps) for d in DOMAINS},
              **{r: (data / "random" / f"{r}.txt", steps) for r in RANDOM},
              "dense": (data / "train", f"train.max_steps={len(DOMAINS) * args.expert_steps}")}
    for name, (corpus, n) in wanted.items():
        if name not in have:
            btm.branch(tree, {name: str(corpus)}, [n, warm])
    btm.train_experts(tree, list(wanted), echo=common.quiet)
    t2 = time.time()
    runs = {"seed": tree / "seed", **{n: tree / "experts" / n for n in wanted}}
    speed = {n: common.last_record(r, "tok_per_s").get("tok_per_s") for n, r in runs.items()}
    return {"tok_per_s": speed, "minutes": {"seed": (t1 - t0) / 60, "experts": (t2 - t1) / 60}}


# --- scoring ----------------------------------------------------------------------------------
def _bpb(nll: np.ndarray, nbytes: np.ndarray) -> float:
    from ..eval.perplexity import summarize

    return summarize(nll, nbytes)["bpb"]


def _averaged(models, weights):
    import copy

    from ..train.btm import average_states

    merged = copy.deepcopy(models[0])
    merged.load_state_dict(average_states([m.state_dict() for m in models], list(weights)))
    return merged


def score_text(group: dict, ids: np.ndarray, dev_ids: np.ndarray, nbytes_of: np.ndarray, args) -> dict:
    """Bits per byte of every model alone, of each expert set's ensembles and averages, and the
    posterior of each held-out window (uniform start) for the picture."""
    from ..eval import ensemble

    context = args.context
    nbytes = nbytes_of[ids[1:]]
    out = {"single": {}, "sets": {}}
    for name in ("seed", "dense"):
        (lp,) = ensemble.expert_logprobs([group[name]], ids, 8, context)
        out["single"][name] = _bpb(-lp, nbytes)
    for label, members in (("domain", DOMAINS), ("random", RANDOM)):
        models = [group[m] for m in members]
        lp = ensemble.expert_logprobs(models, ids, 8, context)
        uniform = ensemble.uniform_log_prior(len(models))
        dev_prior = ensemble.prior_from_sequences(models, ensemble.dev_sequences(dev_ids, args.dev_sequences, context))
        (merged_lp,) = ensemble.expert_logprobs([_averaged(models, np.exp(dev_prior))], ids, 8, context)
        (uniform_lp,) = ensemble.expert_logprobs([_averaged(models, [1.0] * len(models))], ids, 8, context)
        n_docs = min(args.documents, lp.shape[1] // context)
        windows = lp[:, : n_docs * context].reshape(len(models), n_docs, context).sum(axis=2)
        post = np.exp(windows - ensemble.logsumexp(windows, axis=0)[None, :])  # [experts, documents]
        out["sets"][label] = {
            "experts": dict(zip(members, (_bpb(-row, nbytes) for row in lp))),
            "ensemble_uniform": _bpb(-ensemble.mixture_logprobs(uniform, lp, context), nbytes),
            "ensemble_dev": _bpb(-ensemble.mixture_logprobs(dev_prior, lp, context), nbytes),
            "average_dev": _bpb(-merged_lp, nbytes), "average_uniform": _bpb(-uniform_lp, nbytes),
            "dev_prior": dict(zip(members, np.exp(dev_prior).tolist())),
            "document_posteriors": post.T.tolist()}
    return out


def score_all(args, work: Path) -> dict:
    from ..checkpoint import load_model
    from ..data.corpora import read_corpus
    from ..data.shards import encode_documents

    tree = work / "btm"
    group, tokenizer = {}, None
    for name in ("seed", "dense", *DOMAINS, *RANDOM):
        model, tokenizer, _ = load_model(tree / ("seed" if name == "seed" else f"experts/{name}"))
        group[name] = model.eval()

    def ids(path):
        return np.asarray(encode_documents(read_corpus(str(path), "text", ""), tokenizer), dtype=np.int64)

    nbytes_of = tokenizer.token_nbytes()
    return {name: score_text(group, ids(work / "data" / "test" / f"{common.slug(name)}.txt"),
                             ids(work / "data" / "dev" / f"{common.slug(name)}.txt"), nbytes_of, args)
            for name in (*DOMAINS, UNSEEN)}


def measure(args) -> dict:
    import torch

    from ..checkpoint import load_model

    torch.set_num_threads(args.threads or torch.get_num_threads())
    work = Path(args.work)
    data = write_data(work, args.domain_kb, args.eval_kb)
    t0 = time.time()
    training = train_all(args, work)
    t1 = time.time()
    scores = score_all(args, work)
    params = sum(p.numel() for p in load_model(work / "btm" / "seed")[0].parameters())
    return {"settings": settings(args), "machine": common.machine(), "data": data, "params": params,
            "training": training, "scores": scores,
            "minutes": {"train": (t1 - t0) / 60, "score": (time.time() - t1) / 60},
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0))}


def run(args) -> int:
    from .btm_report import claims, write_report

    if args.quick:
        common.use_quick(args, QUICK)
    doc = Path(args.doc)
    # the claims are re-decided on --render-only too: a changed rule, or a page moved into docs/, reaches the JSON
    results = common.read_json(results_path(doc)) if args.render_only else measure(args)
    results["claims"] = claims(results, str(doc))
    common.write_json(results_path(doc), results)
    write_report(results, doc)
    print(f"wrote {doc} and {results_path(doc)}")
    return 0
