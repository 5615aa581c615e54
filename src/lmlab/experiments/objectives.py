"""`lmlab experiment objectives`: objectives beyond left-to-right, measured at small scale.

Parts (each trains its own small models, on this machine, and measures them):
- mlm: masked-LM on English characters (tinyshakespeare): bidirectional attention, SSM and LMU
  against causal attention trained on the same masked objective (masked-token accuracy,
  pseudo-perplexity).
- protein: masked protein LM on the `proteins` corpus: bidirectional SSM vs bidirectional
  attention at matched parameter counts; accuracy and pseudo-perplexity vs window length,
  forward cost vs length.
- denoise: a denoising LM (noisy [SEP] clean) on English prose; WER of the noisy text and of the
  beam-decoded correction, per noise kind and mixed; one model per training noise vs the mixture.
- fusion: n-best rescoring of noisy hypotheses with causal LMs of several sizes and weights,
  and a character n-gram baseline (WER before / after), each LM also trained on a fraction of the
  text (the low-resource question).
Every part runs once per seed (--seeds); the report gives the mean and the spread over seeds, and
the claims (objectives_report.claims) are decided from those. Results go to docs/experiments/objectives-results.json (parts not run keep their old numbers)
and docs/experiments/objectives.md.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.corpora import shared_data_dir
from ..errors import LmlabError
from ..options import COUNT
from . import common

NAME = "objectives"
HELP = "masked LM, protein LM (bi-SSM vs bi-attention), denoising LM and LM fusion, measured"
PARTS = ("mlm", "protein", "denoise", "fusion")


def add_arguments(p) -> None:
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    p.add_argument("--quick", action="store_true", help="tiny models and few steps: an end-to-end check (< 60 s)")
    p.add_argument("--out", default="runs/objectives", help="run directories (finished runs are reused)")
    p.add_argument("--docs", default="docs/experiments", help="where objectives.md, its JSON and PNGs go")
    p.add_argument("--seeds", default="1337,1338",
                   help="comma-separated train.seed values: every part runs once per seed (default 1337,1338)")
    p.add_argument("--threads", type=COUNT, default=1, help="torch threads (default 1: robust on a shared CPU)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite objectives.md from its results JSON, measuring nothing")


@dataclass
class Scale:
    """Model and budget sizes; `quick` shrinks everything to seconds."""
    layers: int
    d_model: int
    batch: int
    context: int
    protein_context: int
    steps: int
    protein_steps: int
    denoise_steps: int
    lm_steps: int
    eval_tokens: int
    pseudo_tokens: int
    lengths: tuple
    cost_lengths: tuple
    sentences: int
    beam: int
    text_fractions: tuple  # fusion: the share of the training text each low-resource LM reads
    words: int          # words per held-out sentence (denoise, fusion)
    prose: str          # the English corpus of denoise and fusion


FULL = Scale(layers=2, d_model=96, batch=16, context=128, protein_context=128, steps=150, protein_steps=800,
             denoise_steps=300, lm_steps=150, eval_tokens=8000, pseudo_tokens=512, lengths=(32, 64, 128, 256, 512),
             cost_lengths=(128, 256, 512, 1024, 2048), sentences=30, beam=4, words=10, prose="english-prose",
             text_fractions=(0.02, 0.1))
QUICK = Scale(layers=1, d_model=32, batch=4, context=64, protein_context=32, steps=4, protein_steps=4,
              denoise_steps=4, lm_steps=4, eval_tokens=256, pseudo_tokens=32, lengths=(16, 32),
              cost_lengths=(32, 64), sentences=4, beam=2, words=4, prose=str(shared_data_dir() / "multilingual" / "en.txt"),
              text_fractions=(0.5,))


class Context:
    def __init__(self, args):
        self.scale = QUICK if args.quick else FULL
        self.root, self.threads, self.quick = Path(args.out), args.threads, args.quick
        self.use_seed(seeds_of(args)[0])
        self.log = lambda msg: print(msg, flush=True)

    def use_seed(self, seed: int) -> None:
        """Measure with train.seed = seed, in runs of its own."""
        self.seed, self.out = seed, self.root / f"seed{seed}"

    def prose(self) -> list[str]:
        return ["tokenizer.kind=char", f"data.corpus={self.scale.prose}"]

    def base(self, context: int | None = None) -> list[str]:
        s = self.scale
        return [f"model.n_layers={s.layers}", f"model.d_model={s.d_model}", "model.n_heads=4",
                f"model.context={context or s.context}", f"train.batch_size={s.batch}", "train.lr=2e-3",
                "train.min_lr=2e-4", f"train.warmup_steps={min(30, s.steps)}", "train.eval_batches=4",
                "train.dtype=float32", "train.device=cpu", "train.progress=false", f"train.seed={self.seed}",
                f"train.threads={self.threads}", "model.ssm_head_dim=16" if s.d_model < 64 else "model.ssm_head_dim=32"]

    def train(self, name: str, overrides: list[str], steps: int) -> tuple:
        """Train (or reuse the finished run) and load it: (model, tokenizer, cfg, train result)."""
        from .. import config
        from ..checkpoint import load_model
        from ..train.loop import train

        cfg = config.load(None, overrides + [f"train.max_steps={steps}", f"train.eval_every={steps}",
                                             f"train.ckpt_every={steps}"])
        out = self.out / name
        t0 = time.perf_counter()
        result = train(cfg, out, resume=True, progress=False, echo=lambda *a: None)
        model, tokenizer, cfg = load_model(out)
        self.log(f"{name}: trained ({time.perf_counter() - t0:.0f} s, {model.num_params():,} parameters)")
        return model, tokenizer, cfg, {**result, "train_tok_per_s": _median_tok_per_s(out)}


def _median_tok_per_s(run: Path) -> float:
    import statistics

    from ..train.metrics import read

    rows = read(run)
    return statistics.median(r["tok_per_s"] for r in rows[2:] or rows)


def validation_ids(cfg, tokenizer, limit: int):
    import numpy as np

    from ..data.shards import token_splits

    _, val = token_splits(cfg, tokenizer)
    return np.asarray(val[:limit], dtype=np.int64)


def matched_d_ff(reference_params: int, overrides: list[str]) -> int:
    """The FFN width that brings a variant's parameter count closest to the reference's."""
    from .. import config
    from ..model import Transformer

    def params(d_ff: int) -> int:
        cfg = config.load(None, overrides + [f"model.d_ff={d_ff}"]).model
        cfg.vocab_size = 300
        return Transformer(cfg).num_params()

    d_model = config.load(None, overrides).model.d_model
    candidates = range(16, 8 * d_model + 1, 16)
    return min(candidates, key=lambda f: abs(params(f) - reference_params))


# ------------------------------------------------------------------------------------------ mlm
MLM_VARIANTS = {
    "attention, causal": ["model.pattern=AF", "model.causal=true"],
    "attention, bidirectional": ["model.pattern=AF", "model.causal=false"],
    "SSM, bidirectional": ["model.pattern=MF", "model.causal=false", "model.ssm_expand=1"],
    "LMU, bidirectional": ["model.pattern=LF", "model.causal=false"],
}


def part_mlm(ctx: Context) -> dict:
    from ..eval.mlm import evaluate_mlm

    s = ctx.scale
    data = ["tokenizer.kind=char", "data.corpus=tinyshakespeare", "train.objective=mlm"]
    rows = {}
    for name, overrides in MLM_VARIANTS.items():
        model, tokenizer, cfg, result = ctx.train(f"mlm/{_slug(name)}", ctx.base() + data + overrides, s.steps)
        ids = validation_ids(cfg, tokenizer, s.eval_tokens)
        scores = evaluate_mlm(model, tokenizer, ids, pseudo_tokens=s.pseudo_tokens)
        rows[name] = {**scores, "params": model.num_params(), "train_tok_per_s": result["train_tok_per_s"],
                      "overrides": overrides}
        ctx.log(f"  masked acc {scores['masked_acc']:.3f}  pseudo-ppl {scores['pseudo_ppl']:.2f}")
    return {"variants": rows, "settings": {"base": ctx.base() + data, "steps": s.steps, "seed": ctx.seed,
                                           "eval_tokens": s.eval_tokens, "pseudo_tokens": s.pseudo_tokens}}


# -------------------------------------------------------------------------------------- protein
def part_protein(ctx: Context) -> dict:
    from ..eval.mlm import mask_id_of, masked_scores, pseudo_perplexity, tile

    s = ctx.scale
    corpus = "proteins" if not ctx.quick else quick_fasta(ctx.out / "quick-proteins.faa")
    data = ["tokenizer.kind=amino", f"data.corpus={corpus}", "train.objective=mlm", "model.causal=false"]
    base = ctx.base(s.protein_context) + data + [f"train.batch_size={max(1, s.batch // 2)}"]  # mlm's tokens per step
    attn = base + ["model.pattern=AF"]
    from .. import config
    from ..model import Transformer

    ref_cfg = config.load(None, attn).model
    ref_cfg.vocab_size = 300
    ssm = base + ["model.pattern=MF", "model.ssm_expand=1"]
    ssm = ssm + [f"model.d_ff={matched_d_ff(Transformer(ref_cfg).num_params(), ssm)}"]
    rows = {}
    for name, overrides in (("attention, bidirectional", attn), ("SSM, bidirectional", ssm)):
        model, tokenizer, cfg, result = ctx.train(f"protein/{_slug(name)}", overrides, s.protein_steps)
        ids = validation_ids(cfg, tokenizer, s.eval_tokens)
        mask_id, nbytes = mask_id_of(model, tokenizer), tokenizer.token_nbytes()
        by_length = {}
        for L in s.lengths:
            windows = tile(ids, L)
            scores = masked_scores(model, windows, nbytes, mask_id)
            n_pseudo = max(1, min(len(windows), s.pseudo_tokens // L))
            scores.update(pseudo_perplexity(model, windows[:n_pseudo], nbytes, mask_id))
            by_length[L] = scores
            ctx.log(f"  L={L}: masked acc {scores['masked_acc']:.3f}  pseudo-ppl {scores['pseudo_ppl']:.2f}")
        rows[name] = {"by_length": by_length, "params": model.num_params(), "overrides": overrides[len(base):],
                      "unigram_ppl": unigram_perplexity(cfg, tokenizer, ids),
                      "train_tok_per_s": result["train_tok_per_s"], "cost": forward_cost(model, s.cost_lengths),
                      "train_cost": forward_cost(model, s.cost_lengths, backward=True)}
    return {"variants": rows, "settings": {"base": base, "steps": s.protein_steps, "seed": ctx.seed,
                                           "eval_tokens": s.eval_tokens, "pseudo_tokens": s.pseudo_tokens,
                                           "lengths": list(s.lengths)}}


def unigram_perplexity(cfg, tokenizer, val_ids) -> float:
    """Perplexity of the training split's token frequencies (add-one) on the validation ids:
    what a model that ignores context scores, the bar a masked LM has to clear."""
    import math

    import numpy as np

    from ..data.shards import token_splits

    train_ids, _ = token_splits(cfg, tokenizer)
    counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=tokenizer.vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return math.exp(-float(logp[val_ids].mean()))


def quick_fasta(path: Path) -> Path:
    """--quick only: random sequences over the 20 residues, so the smoke test needs no download."""
    import numpy as np

    from ..tokenizers.amino import STANDARD

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f">q{i}\n" + "".join(rng.choice(list(STANDARD), int(rng.integers(40, 120)))) + "\n"
                            for i in range(80)))
    return path


def forward_cost(model, lengths, batch: int = 4, reps: int = 3, backward: bool = False) -> dict:
    """Median seconds of one forward pass (no grad), or with backward=True of a forward and
    backward pass (a training step's work), of [batch, L] random ids, per length."""
    import statistics
    from contextlib import nullcontext

    import torch

    model.eval()
    out = {}
    gen = torch.Generator().manual_seed(0)

    def once(x):
        with nullcontext() if backward else torch.no_grad():
            y = model(x)[0]
            if backward:
                y.float().mean().backward()
                model.zero_grad(set_to_none=True)

    for L in lengths:
        x = torch.randint(1, 21, (batch, L), generator=gen)
        once(x)  # warm-up (RoPE tables, LMU impulse responses)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            once(x)
            times.append(time.perf_counter() - t0)
        out[L] = statistics.median(times)
    return out


# -------------------------------------------------------------------------------------- denoise
MIXED = "sub=0.1,del=0.05,ins=0.05,char=0.05"
TEST_NOISES = {"sub": "sub=0.25", "del": "del=0.25", "ins": "ins=0.25", "char": "char=0.25", "mixed": MIXED}
DENOISERS = {"mixed": MIXED, "char only": "char=0.25"}  # 0.25 noise events per word each


def held_out_sentences(cfg, tokenizer, n: int, words: int = 10) -> list[str]:
    """n chunks of `words` consecutive words, evenly spaced over the validation split."""
    from ..data.shards import token_splits

    _, val = token_splits(cfg, tokenizer)
    all_words = tokenizer.decode(val).split()[1:]  # the split may start inside a word
    step = max(words, (len(all_words) - words) // max(n, 1))
    return [" ".join(all_words[i:i + words]) for i in range(0, step * n, step)][:n]


def part_denoise(ctx: Context) -> dict:
    import numpy as np

    from ..data.noise import Noise, vocabulary
    from ..eval.wer import wer
    from ..infer.denoise import correct

    s = ctx.scale
    rows, sentences, noisy = {}, None, {}
    for name, spec in DENOISERS.items():
        model, tokenizer, cfg, _ = ctx.train(f"denoise/{_slug(name)}", ctx.base() + ctx.prose() + [
            "train.objective=denoise", f"train.noise={spec}"], s.denoise_steps)
        if sentences is None:
            sentences = held_out_sentences(cfg, tokenizer, s.sentences, s.words)
            from ..data.shards import token_splits

            train_ids, _ = token_splits(cfg, tokenizer)
            vocab = vocabulary(tokenizer.decode(np.asarray(train_ids)))
            for k, (kind, test_spec) in enumerate(TEST_NOISES.items()):
                noise = Noise(test_spec, vocab)
                noisy[kind] = [noise(t, np.random.default_rng([ctx.seed, k, i])) for i, t in enumerate(sentences)]
        row = {}
        for kind in TEST_NOISES:
            t0 = time.perf_counter()
            fixed = [correct(model, tokenizer, src, beam=1) for src in noisy[kind]]
            row[kind] = {"noisy_wer": wer(sentences, noisy[kind]), "corrected_wer": wer(sentences, fixed),
                         "decode_s": time.perf_counter() - t0}
            ctx.log(f"  {kind}: WER {row[kind]['noisy_wer']:.3f} -> {row[kind]['corrected_wer']:.3f}")
        if name == "mixed":  # beam search against greedy, on the mixed test noise
            fixed = [correct(model, tokenizer, src, beam=s.beam) for src in noisy["mixed"]]
            row["mixed, beam"] = {"noisy_wer": row["mixed"]["noisy_wer"], "corrected_wer": wer(sentences, fixed),
                                  "beam": s.beam, "examples": list(zip(sentences[:3], noisy["mixed"][:3], fixed[:3]))}
        rows[name] = {"train_noise": spec, "by_test_noise": row, "params": model.num_params()}
    return {"models": rows, "test_noises": TEST_NOISES,
            "settings": {"base": ctx.base() + ctx.prose() + ["train.objective=denoise"], "steps": s.denoise_steps,
                         "seed": ctx.seed, "sentences": len(sentences), "words_per_sentence": s.words}}


# --------------------------------------------------------------------------------------- fusion
def lm_sizes(scale: Scale) -> dict:
    """Two causal LMs: one layer at half the width, and the experiment's base shape."""
    half = max(16, scale.d_model // 2)
    return {f"LM {1}x{half}": ["model.n_layers=1", f"model.d_model={half}"], f"LM {scale.layers}x{scale.d_model}": []}


WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.4, 0.8)
BONUSES = (0.0, 0.5, 1.0, 2.0, 4.0)


def synthetic_nbest(sentences: list[str], vocab, seed: int, k: int = 8) -> list[dict]:
    """k noisy versions of each reference (mixed noise, rates scaled by a per-hypothesis draw
    in [0, 1.5]) whose first-pass score is -(word errors) + N(0, 1.5): better hypotheses score
    better on average, as a recogniser's would, but the first-pass best is often not the best."""
    import numpy as np

    from ..data.noise import Noise, PhoneticLexicon, parse_spec
    from ..eval.wer import edit_distance

    base, lexicon = parse_spec(MIXED), PhoneticLexicon(vocab)
    lists = []
    for i, ref in enumerate(sentences):
        rng = np.random.default_rng([seed, 99, i])
        hyps, seen = [], set()
        for _ in range(8 * k):  # distinct hypotheses, as a recogniser's n-best list has
            scale = float(rng.uniform(0.0, 1.5))
            noise = Noise({kind: min(1.0, r * scale) for kind, r in base.items()}, lexicon=lexicon)
            text = noise(ref, rng) or ref.split()[0]
            if text in seen:
                continue
            seen.add(text)
            errors = edit_distance(ref.split(), text.split())
            hyps.append({"text": text, "score": -errors + float(rng.normal(0.0, 1.5))})
            if len(hyps) == k:
                break
        lists.append({"id": i, "reference": ref, "hypotheses": hyps})
    return lists


def part_fusion(ctx: Context) -> dict:
    import numpy as np

    from ..data.noise import vocabulary
    from ..data.shards import token_splits
    from ..eval.wer import wer
    from ..infer.fusion import TransformerScorer, rescore
    from ..infer.ngram import CharNgramLM

    s = ctx.scale
    scorers, params, text_chars = {}, {}, {}
    for name, size in lm_sizes(s).items():
        model, tokenizer, cfg, _ = ctx.train(f"fusion/{_slug(name)}", ctx.base() + ctx.prose() + size, s.lm_steps)
        scorers[name], params[name] = TransformerScorer(model, tokenizer), model.num_params()
    train_ids, _ = token_splits(cfg, tokenizer)
    train_text = tokenizer.decode(np.asarray(train_ids))
    scorers["char 5-gram"] = CharNgramLM(train_text, 5)
    text_chars.update({name: len(train_text) for name in scorers})
    big = list(lm_sizes(s))[-1]
    for frac in s.text_fractions:  # low resource: the same LMs on the first part of the training text only
        part = train_text[:int(len(train_text) * frac)]
        path = ctx.out / "fusion" / f"text-{frac}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(part, encoding="utf-8")
        name = f"{big}, {frac:.0%} of the text"
        model, tok, _, _ = ctx.train(f"fusion/{_slug(name)}", ctx.base() + ["tokenizer.kind=char",
                                     f"data.corpus={path}", "data.val_fraction=0.02"], s.lm_steps)
        scorers[name], params[name] = TransformerScorer(model, tok), model.num_params()
        scorers[f"char 5-gram, {frac:.0%} of the text"] = CharNgramLM(part, 5)
        text_chars[name] = text_chars[f"char 5-gram, {frac:.0%} of the text"] = len(part)
    sentences = held_out_sentences(cfg, tokenizer, 2 * s.sentences, s.words)
    lists = synthetic_nbest(sentences, vocabulary(train_text), ctx.seed)
    dev, test = lists[::2], lists[1::2]  # W and B are chosen on dev, reported on test
    refs = lambda ls: [r["reference"] for r in ls]
    first = lambda ls: [max(r["hypotheses"], key=lambda h: h["score"])["text"] for r in ls]
    oracle = lambda ls: [min(r["hypotheses"], key=lambda h: _errors(r["reference"], h["text"]))["text"] for r in ls]
    out = {"first_pass_wer": {"dev": wer(refs(dev), first(dev)), "test": wer(refs(test), first(test))},
           "oracle_wer": {"dev": wer(refs(dev), oracle(dev)), "test": wer(refs(test), oracle(test))}, "lms": {}}
    for name, scorer in scorers.items():
        t0 = time.perf_counter()
        lm_scores = {}  # one LM pass per hypothesis; the grid only recombines
        for r in lists:
            lm_scores[r["id"]] = rescore(r["hypotheses"], scorer, 0.0)["hypotheses"]
        grid = {}
        for W in WEIGHTS:
            for B in BONUSES:
                pick = lambda ls: [max(lm_scores[r["id"]], key=lambda h: h["score"] + W * h["lm"]
                                       + B * len(h["text"].split()))["text"] for r in ls]
                grid[f"{W},{B}"] = {"dev": wer(refs(dev), pick(dev)), "test": wer(refs(test), pick(test))}
        best = min(grid, key=lambda key: (grid[key]["dev"], key))
        out["lms"][name] = {"grid": grid, "best_on_dev": best, "test_wer_at_best": grid[best]["test"],
                            "params": params.get(name), "text_chars": text_chars[name],
                            "score_s": time.perf_counter() - t0}
        ctx.log(f"  {name}: W,B={best}: test WER {grid[best]['test']:.3f} (first pass {out['first_pass_wer']['test']:.3f})")
    out["settings"] = {"base": ctx.base() + ctx.prose(), "steps": s.lm_steps, "seed": ctx.seed, "lists": len(lists),
                       "hypotheses_per_list": "up to 8 distinct", "weights": list(WEIGHTS), "bonuses": list(BONUSES),
                       "text_fractions": list(s.text_fractions)}
    out["example"] = lists[1]
    return out


def _errors(ref: str, hyp: str) -> int:
    from ..eval.wer import edit_distance

    return edit_distance(ref.split(), hyp.split())


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


MEASURES = {"mlm": part_mlm, "protein": part_protein, "denoise": part_denoise, "fusion": part_fusion}


def run(args) -> int:
    import torch

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise LmlabError(f"unknown part(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(PARTS)}")
    missing = [p for p in parts if p not in MEASURES]
    if missing:
        raise LmlabError(f"part(s) {', '.join(missing)} are not implemented in this checkout")
    seeds = seeds_of(args)  # checked before any work
    docs = Path(args.docs)
    results_path = docs / "objectives-results.json"
    if args.render_only:
        print(f"report: {render(common.read_json(results_path), results_path, docs)}")
        return 0
    torch.set_num_threads(args.threads)
    ctx = Context(args)
    docs.mkdir(parents=True, exist_ok=True)
    results = common.read_json(results_path) if results_path.is_file() else {}
    for part in parts:
        t0 = time.perf_counter()
        runs = {}
        for seed in seeds:
            ctx.log(f"== {part}, seed {seed}")
            ctx.use_seed(seed)
            runs[str(seed)] = MEASURES[part](ctx)
        results[part] = {"runs": runs, "seeds": seeds, "wall_s": time.perf_counter() - t0, "quick": args.quick,
                         "command": command_line(args, part)}
        results["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads}
        common.write_json(results_path, results)  # after each part: a later failure keeps it
    results = common.read_json(results_path)  # the report reads what the file holds (string keys)
    print(f"report: {render(results, results_path, docs)}")
    return 0


def render(results: dict, results_path: Path, docs: Path) -> Path:
    """The claims decided from the results (saved with them), then the page."""
    from .objectives_report import claims, write_report  # imported when needed: a long run reads the newest

    results["claims"] = claims(results)
    common.write_json(results_path, results)
    return write_report(results, docs)


def seeds_of(args) -> list[int]:
    seeds = common.numbers(args.seeds, int, "--seeds")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise LmlabError(f"--seeds must be distinct non-negative integers, not {args.seeds!r}")
    return seeds


def command_line(args, part: str) -> str:
    return (f"lmlab experiment objectives --parts {part} --out {args.out} --docs {args.docs} --seeds {args.seeds}"
            f" --threads {args.threads}" + (" --quick" if args.quick else ""))
