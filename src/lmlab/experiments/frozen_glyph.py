"""Frozen visual Unicode embeddings vs trainable vs frozen random codes (PAPERS.md section 1).

Identical models, data, seed and steps; only `model.embedding` changes (trainable, glyph,
binary, gaussian). The head is untied in every run, so the only difference is the input table.
For each corpus the last `--heldout` of every document is held out: those pieces are put last in
the corpus, and `data.val_fraction` is set so the validation split is exactly them. Validation
bits per byte, tokens/s, and a log-likelihood multiple-choice score on items built from the
held-out text (lmlab.eval.choice) are reported, with curves and a glyph sheet as PNGs.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .. import jsonio
from ..errors import LmlabError

NAME = "frozen-glyph"
HELP = "frozen glyph embeddings vs trainable vs frozen random codes, English and multilingual"
EMBEDDINGS = ("trainable", "glyph", "binary", "gaussian")
CORPORA = {"english": "english-prose", "multilingual": "multilingual"}
QUERIES = ("a", "e", "的", "ть", "E")


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/frozen-glyph", help="output directory (default runs/frozen-glyph)")
    p.add_argument("--figures", default="", help="also copy the PNGs here (e.g. docs/experiments/img)")
    p.add_argument("--work", default="", help="folder for corpora, tokenizers and runs (default: --out)")
    p.add_argument("--corpora", default="english,multilingual", help="comma list of: english, multilingual")
    p.add_argument("--embeddings", default=",".join(EMBEDDINGS), help="comma list of model.embedding kinds")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--vocab-english", type=int, default=2048)
    p.add_argument("--vocab-multilingual", type=int, default=4096)
    p.add_argument("--heldout", type=float, default=0.1, help="fraction of each document held out")
    p.add_argument("--items", type=int, default=240, help="multiple-choice items per corpus")
    p.add_argument("--seeds", default="1337", help="comma list of train.seed values; tables give mean and sd")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="auto", help="train.device: auto | cpu | cuda")
    p.add_argument("--font", default="", help="model.glyph_font: font file(s) tried before Unifont/DejaVu")


def split_documents(docs, fraction: float):
    """(train pieces, held-out pieces): the last `fraction` of each document, cut at a space."""
    train, held = [], []
    for d in docs:
        cut = int(len(d.text) * (1 - fraction))
        space = d.text.rfind(" ", max(0, cut - 200), cut)
        cut = space if space > 0 else cut
        train.append((d.name, d.text[:cut]))
        held.append((d.name, d.text[cut:]))
    return train, held


def write_corpus(folder: Path, train, held) -> None:
    """Training pieces first, held-out pieces last (read_directory sorts by path)."""
    if folder.exists():
        shutil.rmtree(folder)
    for part, pieces in (("0-train", train), ("1-heldout", held)):
        for name, text in pieces:
            path = folder / part / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def base_config(args, corpus_dir: Path, tokenizer_dir: Path, val_fraction: float, embedding: str, seed: int):
    from .. import config

    cfg = config.load(None, [
        f"model.n_layers={args.layers}", f"model.d_model={args.d_model}", "model.n_heads=4",
        f"model.context={args.context}", "model.tie_embeddings=false", f"model.embedding={embedding}",
        "tokenizer.kind=unicode", f"data.corpus={corpus_dir}", f"data.val_fraction={val_fraction}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", "train.lr=3e-3",
        "train.min_lr=3e-4", f"train.warmup_steps={max(1, args.steps // 12)}",
        f"train.eval_every={max(1, args.steps // 12)}", "train.eval_batches=8",
        f"train.ckpt_every={args.steps}", "train.keep_last=1", "train.dtype=float32", f"train.device={args.device}",
        "train.progress=false", f"train.seed={seed}", f"train.threads={args.threads}",
    ])
    cfg.tokenizer.path = str(tokenizer_dir)
    cfg.model.glyph_font = args.font
    return cfg


def prepare_corpus(args, out: Path, key: str, docs=None):
    """Corpus folder, trained tokenizer, exact validation fraction and held-out documents."""
    from .. import tokenizers
    from ..data.corpora import Document, read_corpus
    from ..tokenizers.unicode import train_corpus

    docs = docs if docs is not None else read_corpus(CORPORA[key])
    train, held = split_documents(docs, args.heldout)
    folder = out / f"corpus-{key}"
    write_corpus(folder, train, held)
    ordered = read_corpus(str(folder))
    vocab = args.vocab_english if key == "english" else args.vocab_multilingual
    tok = train_corpus("".join(d.text for d in ordered), vocab)
    tok_dir = out / f"tokenizer-{key}"
    tok.save(tok_dir)
    tok = tokenizers.load(tok_dir)
    total = sum(len(tok.encode(d.text)) for d in ordered) + len(ordered) - 1
    n_val = sum(len(tok.encode(text)) for _, text in held) + len(held)  # + the eot before each piece
    return folder, tok_dir, tok, (n_val + 0.5) / total, [Document(n, t) for n, t in held]


def curves(run_dir: Path) -> list[tuple[int, float]]:
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "val_bpb" in rec:
            points.append((rec["step"], rec["val_bpb"]))
    return points


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in results if results[k]["runs"]]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for emb, r in results[key]["runs"].items():
            steps, bpb = zip(*r["curve"])
            ax.plot(steps, bpb, marker="o", markersize=3, label=f"{emb} ({r['val_bpb']:.3f})")
        ax.set_title(f"{key}: validation bits per byte")
        ax.set_xlabel("step")
        ax.set_ylabel("bits/byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def glyph_sheet(tok, args, path: Path) -> dict:
    from ..commands.glyphs import neighbours, write_sheet
    from ..embeddings.glyph import build_glyph_matrix, token_texts
    from ..embeddings.render import GlyphRenderer, default_font_chain

    texts = token_texts(tok, tok.vocab_size)
    fonts = default_font_chain([f for f in args.font.split(os.pathsep) if f])
    matrix, report = build_glyph_matrix(texts, args.d_model, fonts=fonts)
    ids = {t: i for i, t in enumerate(texts)}
    rows = [(q, [(texts[i], s) for i, s in neighbours(matrix.clone(), ids[q], 8)]) for q in QUERIES if q in ids]
    sheet = [t for t in texts[257:] if t.strip()][::max(1, (len(texts) - 257) // 96)][:96]
    write_sheet(path, GlyphRenderer(fonts=fonts), sheet, rows)
    return {"coverage": report, "neighbours": {q: [[t, round(s, 3)] for t, s in n] for q, n in rows}}


def markdown(results: dict) -> str:
    lines = ["| corpus | embedding | seeds | val bits/byte | MC acc | MC acc_norm | tokens/s | trained params | frozen | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        for emb, r in res["runs"].items():
            n = len(r["seeds"])
            pm = (lambda m, sd, f: f"{m:{f}} ± {sd:{f}}") if n > 1 else (lambda m, sd, f: f"{m:{f}}")
            mc = r["mc"]
            lines.append(f"| {key} | {emb} | {n} | {pm(r['val_bpb'], r['val_bpb_sd'], '.4f')} | "
                         f"{pm(mc['acc'], mc['acc_sd'], '.3f')} | {pm(mc['acc_norm'], mc['acc_norm_sd'], '.3f')} | "
                         f"{r['tok_per_s']:.0f} | {r['params']:,} | {r['frozen']:,} | {r['minutes']:.1f} |")
    lines.append("")
    lines.append("mean ± sample sd over the row's seeds (when more than one); minutes summed over seeds.")
    for key, res in results.items():
        lines.append(f"{key}: {res['mc_items']} items, {res['mc_chance']:.2f} chance; vocabulary {res['vocab_size']}; "
                     f"validation {res['val_tokens']} tokens")
    return "\n".join(lines) + "\n"


def one_run(args, run_dir: Path, folder, tok_dir, val_fraction, emb, seed, items, held) -> dict:
    """Train one model, then score it: final val bits/byte, multiple choice, a sample."""
    from ..eval.choice import score_items
    from ..infer.generate import generate
    from ..checkpoint import load_model
    from ..train.loop import train

    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = base_config(args, folder, tok_dir, val_fraction, emb, seed)
    t0 = time.perf_counter()
    final = train(cfg, run_dir, progress=False, echo=lambda *a, **k: None)
    model, tok, _ = load_model(run_dir)
    mc = score_items(model, tok, items, batch_size=16)
    source = next((h for h in held if h.name.endswith("en.txt")), held[0]).text.lstrip()
    prompt = tok.decode(tok.encode(source[:60])[: args.context // 2])
    sample = generate(model, tok, prompt, max_new_tokens=80, temperature=0.8, seed=0)
    return {"seed": seed, "val_bpb": final["val_bpb"], "val_loss": final["val_loss"], "tok_per_s": final["tok_per_s"],
            "params": model.num_params(trainable_only=True),
            "frozen": model.embed.weight.numel() if getattr(model.embed, "frozen", False) else 0,
            "mc": mc, "curve": curves(run_dir), "minutes": (time.perf_counter() - t0) / 60,
            "sample": {"prompt": prompt, "text": sample}}


def summarise(per_seed: list[dict]) -> dict:
    """Mean and sample sd over seeds of the headline numbers; the mean curve; per-seed records."""
    import statistics

    def stats(values):
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    bpb, bpb_sd = stats([r["val_bpb"] for r in per_seed])
    acc, acc_sd = stats([r["mc"]["acc"] for r in per_seed])
    norm, norm_sd = stats([r["mc"]["acc_norm"] for r in per_seed])
    steps = [s for s, _ in per_seed[0]["curve"]]
    curve = [(s, statistics.fmean(r["curve"][i][1] for r in per_seed)) for i, s in enumerate(steps)]
    first = per_seed[0]
    return {"val_bpb": bpb, "val_bpb_sd": bpb_sd, "mc": {"acc": acc, "acc_sd": acc_sd, "acc_norm": norm,
            "acc_norm_sd": norm_sd}, "tok_per_s": statistics.median(r["tok_per_s"] for r in per_seed),
            "params": first["params"], "frozen": first["frozen"], "curve": curve,
            "minutes": sum(r["minutes"] for r in per_seed), "seeds": per_seed}


def write_results(results: dict, out: Path) -> None:
    (out / "results.json").write_text(jsonio.dumps(results, indent=1, ensure_ascii=False))
    plot_curves(results, out / "curves.png")
    (out / "report.md").write_text(markdown(results), encoding="utf-8")


def run(args) -> int:
    from ..eval.choice import items_from_documents, save_items

    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    embeddings = [e.strip() for e in args.embeddings.split(",") if e.strip()]
    for c in corpora:
        if c not in CORPORA:
            raise LmlabError(f"--corpora: unknown {c!r}; valid: {', '.join(CORPORA)}")
    for e in embeddings:
        if e not in EMBEDDINGS:
            raise LmlabError(f"--embeddings: unknown {e!r}; valid: {', '.join(EMBEDDINGS)}")
    if args.steps < 1:
        raise LmlabError("--steps must be at least 1")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise LmlabError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    if not seeds:
        raise LmlabError("--seeds is empty")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else out
    results, prepared, per_seed = {}, {}, {}
    for key in corpora:  # corpora, tokenizers, items and glyph sheets first: cheap, and needed by every run
        folder, tok_dir, tok, val_fraction, held = prepare_corpus(args, work, key)
        cont = max(8, min(40, args.context // 4))  # a choice must fit the window even at 1 char/token
        items = items_from_documents(held, n_items=args.items, n_choices=4, context_chars=4 * cont,
                                     continuation_chars=cont, seed=seeds[0])
        save_items(items, out / f"items-{key}.jsonl")
        prepared[key] = (folder, tok_dir, val_fraction, held, items)
        results[key] = {"vocab_size": tok.vocab_size, "mc_items": len(items), "val_fraction": val_fraction,
                        "val_tokens": int(sum(len(tok.encode(h.text)) for h in held)),
                        "mc_chance": 1 / 4, "runs": {}}
        if "glyph" in embeddings:
            results[key]["glyphs"] = glyph_sheet(tok, args, out / f"glyph-sheet-{key}.png")
    for seed in seeds:  # seed-major: a run cut short still has every row for the first seeds
        for key in corpora:
            folder, tok_dir, val_fraction, held, items = prepared[key]
            for emb in embeddings:
                r = one_run(args, work / "runs" / f"{key}-{emb}-{seed}", folder, tok_dir, val_fraction, emb, seed,
                            items, held)
                per_seed.setdefault((key, emb), []).append(r)
                results[key]["runs"][emb] = summarise(per_seed[(key, emb)])
                write_results(results, out)
                print(f"{key:12s} {emb:9s} seed {seed}: val_bpb {r['val_bpb']:.4f}  mc acc {r['mc']['acc']:.3f} "
                      f"acc_norm {r['mc']['acc_norm']:.3f}  {r['tok_per_s']:.0f} tok/s", flush=True)
    print(markdown(results))
    if args.figures:
        fig_dir = Path(args.figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy(png, fig_dir / f"frozen-glyph-{png.name}")
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'curves.png'}")
    return 0
