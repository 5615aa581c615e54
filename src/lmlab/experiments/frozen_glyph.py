"""Frozen visual Unicode embeddings vs trainable vs frozen random codes (PAPERS.md section 1).

Identical models, data, seed and steps; only `model.embedding` changes (trainable, glyph,
binary, gaussian). The head is untied in every run, so the only difference is the input table.
For each corpus the last `--heldout` of every document is held out: those pieces are put last in
the corpus, and `data.val_fraction` is set so the validation split is exactly them. Validation
bits per byte, tokens/s, and a log-likelihood multiple-choice score on items built from the
held-out text (lmlab.eval.choice) go to OUT/results.json, with a glyph sheet per corpus as PNG;
frozen_glyph_report.py turns the results into OUT/report.md and OUT/curves.png.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import LmlabError
from . import common
from ..options import COUNT, HELD_OUT, NONNEG_INT

NAME = "frozen-glyph"
HELP = "frozen glyph embeddings vs trainable vs frozen random codes, English and multilingual"
EMBEDDINGS = ("trainable", "glyph", "binary", "gaussian")
CORPORA = {"english": "english-prose", "multilingual": "multilingual"}
QUERIES = ("a", "e", "的", "ть", "E")
# --quick: every corpus and embedding, at a size that runs in seconds
QUICK = {"steps": 3, "batch_size": 2, "context": 32, "layers": 1, "d_model": 32, "vocab_english": 512,
         "vocab_multilingual": 512, "items": 8, "sheet_tokens": 16}


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/frozen-glyph", help="output directory (default runs/frozen-glyph)")
    p.add_argument("--figures", default="", help="also copy the PNGs here (e.g. docs/experiments/img)")
    p.add_argument("--work", default="", help="folder for corpora, tokenizers and runs (default: --out)")
    p.add_argument("--corpora", default="english,multilingual", help="comma list of: english, multilingual")
    p.add_argument("--embeddings", default=",".join(EMBEDDINGS), help="comma list of model.embedding kinds")
    p.add_argument("--steps", type=COUNT, default=600)
    p.add_argument("--batch-size", type=COUNT, default=16)
    p.add_argument("--context", type=COUNT, default=128)
    p.add_argument("--layers", type=COUNT, default=4)
    p.add_argument("--d-model", type=COUNT, default=128)
    p.add_argument("--vocab-english", type=COUNT, default=2048)
    p.add_argument("--vocab-multilingual", type=COUNT, default=4096)
    p.add_argument("--heldout", type=HELD_OUT, default=0.1, help="fraction of each document held out")
    p.add_argument("--items", type=COUNT, default=240, help="multiple-choice items per corpus")
    p.add_argument("--seeds", default="1337", help="comma list of train.seed values; tables give mean and sd")
    p.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="auto", help="train.device: auto | cpu | cuda")
    p.add_argument("--sheet-tokens", type=COUNT, default=96, help="tokens drawn on each glyph sheet")
    p.add_argument("--font", default="", help="model.glyph_font: font file(s) tried before Unifont/DejaVu")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    p.add_argument("--doc", default="", help="also fill the marked sections of this page from the results and "
                   "write them beside it as NAME-results.json (e.g. docs/experiments/frozen-glyph.md)")
    p.add_argument("--resume", action="store_true", help="keep the runs already in OUT/results.json (same "
                   "settings required) and train only the missing ones: a run cut short goes on from there")
    p.add_argument("--render-only", action="store_true",
                   help="write report.md and curves.png (and --doc) from OUT/results.json, measuring nothing")


def split_documents(docs, fraction: float):
    """(train pieces, held-out pieces): the last `fraction` of each document, cut at a space."""
    train, held = [], []
    for d in docs:
        head, tail = common.split_text(d.text, fraction, at="space")
        train.append((d.name, head))
        held.append((d.name, tail))
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

    every = max(1, args.steps // 12)
    return config.Config(
        model=config.ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=4, context=args.context,
                                 tie_embeddings=False, embedding=embedding, glyph_font=args.font),
        tokenizer=config.TokenizerConfig(kind="unicode", path=str(tokenizer_dir)),
        data=config.DataConfig(corpus=str(corpus_dir), val_fraction=val_fraction),
        train=config.TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=3e-3, min_lr=3e-4,
                                 warmup_steps=every, eval_every=every, eval_batches=8, ckpt_every=args.steps,
                                 keep_last=1, dtype="float32", device=args.device, progress=False, seed=seed,
                                 threads=args.threads))


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


def glyph_sheet(tok, args, path: Path) -> dict:
    from ..embeddings.sheet import neighbours, write_sheet
    from ..embeddings.glyph import build_glyph_matrix, token_texts
    from ..embeddings.render import RENDERER_VERSION, GlyphRenderer, default_font_chain

    texts = token_texts(tok, tok.vocab_size)
    fonts = default_font_chain([f for f in args.font.split(os.pathsep) if f])
    matrix, report = build_glyph_matrix(texts, args.d_model, fonts=fonts)
    ids = {t: i for i, t in enumerate(texts)}
    rows = [(q, [(texts[i], s) for i, s in neighbours(matrix.clone(), ids[q], 8)]) for q in QUERIES if q in ids]
    sheet = [t for t in texts[257:] if t.strip()][::max(1, (len(texts) - 257) // args.sheet_tokens)][:args.sheet_tokens]
    write_sheet(path, GlyphRenderer(fonts=fonts), sheet, rows)
    return {"coverage": {**report, "renderer": RENDERER_VERSION},
            "neighbours": {q: [[t, round(s, 3)] for t, s in n] for q, n in rows}}


def font_record(args) -> dict:
    """The font chain the glyph runs drew with, whether Unifont was among it, and the renderer version."""
    from ..embeddings.render import RENDERER_VERSION, UNIFONT_PATHS, default_font_chain

    chain = default_font_chain([f for f in args.font.split(os.pathsep) if f])
    return {"chain": [Path(p).name for p in chain], "unifont": any("unifont" in Path(p).name.lower() for p in chain),
            "system_unifont": any(os.path.isfile(p) for p in UNIFONT_PATHS), "renderer": RENDERER_VERSION}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none): platform.processor() is often empty."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def one_run(args, run_dir: Path, folder, tok_dir, val_fraction, emb, seed, items, held) -> dict:
    """Train one model, then score it: final val bits/byte, multiple choice, a sample."""
    from ..checkpoint import load_model
    from ..eval.choice import score_items
    from ..infer.generate import generate

    cfg = base_config(args, folder, tok_dir, val_fraction, emb, seed)
    t0 = time.perf_counter()
    final = common.train_fresh(cfg, run_dir)
    model, tok, _ = load_model(run_dir)
    mc = score_items(model, tok, items, batch_size=16)
    source = next((h for h in held if h.name.endswith("en.txt")), held[0]).text.lstrip()
    prompt = tok.decode(tok.encode(source[:60])[: args.context // 2])
    sample = generate(model, tok, prompt, max_new_tokens=80, temperature=0.8, seed=0)
    return {"seed": seed, "val_bpb": final["val_bpb"], "val_loss": final["val_loss"], "tok_per_s": final["tok_per_s"],
            "params": model.num_params(trainable_only=True),
            "frozen": model.embed.weight.numel() if getattr(model.embed, "frozen", False) else 0,
            "mc": mc, "curve": common.curve(run_dir, "val_bpb"), "minutes": (time.perf_counter() - t0) / 60,
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


def command_of(args) -> str:
    """The command line that gives `args`: the options that differ from their defaults, in their order."""
    parts = [f"lmlab experiment {NAME}"]
    for key, default in common.argparse_defaults(add_arguments).items():
        value = getattr(args, key, default)
        if value != default:
            flag = "--" + key.replace("_", "-")
            parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


# what must be equal for an earlier results.json's runs to be reused: the settings and what was prepared
PREPARED = ("vocab_size", "mc_items", "val_fraction", "val_tokens")


def finished_runs(path: Path, results: dict) -> tuple[dict, float]:
    """({(corpus, embedding, seed): run record}, wall seconds spent) of an earlier run of the same experiment."""
    if not path.is_file():
        return {}, 0.0
    old = common.read_json(path)
    same = (same_settings(old, results)
            and all(old.get(key, {}).get(f) == results[key][f] for key in common_keys(old, results) for f in PREPARED))
    if not same:
        raise LmlabError(f"{path} was made with other settings, fonts or data: drop --resume or use another --out")
    done = {(key, emb, r["seed"]): r for key in common_keys(old, results)
            for emb, runs in old[key]["runs"].items() for r in runs["seeds"]}
    return done, old.get("timing", {}).get("wall_s", 0.0)


def same_settings(old: dict, results: dict) -> bool:
    return ({k: v for k, v in old.get("settings", {}).items() if k != "seeds"} ==
            {k: v for k, v in results["settings"].items() if k != "seeds"} and old.get("fonts") == results["fonts"])


def common_keys(old: dict, new: dict) -> list[str]:
    return [k for k in CORPORA if k in old and k in new]


def measure(args, out: Path, corpora: list[str], embeddings: list[str], seeds: list[int], command: str = "") -> dict:
    """Every run, seed-major; OUT/results.json (and the report) rewritten after each one."""
    from ..eval.choice import items_from_documents, save_items
    from .frozen_glyph_report import claims_of, write_report

    import torch

    work = Path(args.work) if args.work else out
    start = common.timing_start()
    results, prepared, per_seed = {"fonts": font_record(args)}, {}, {}
    results["settings"] = {"steps": args.steps, "batch_size": args.batch_size, "context": args.context,
                           "layers": args.layers, "d_model": args.d_model, "seeds": seeds, "device": args.device,
                           "threads": args.threads, "font": args.font, "quick": args.quick}
    # what the numbers were measured on: the page states it from here, not from prose that goes stale
    results["command"] = command
    results["machine"] = {**common.machine(), "cpu_model": cpu_model(), "device": "cuda" if args.device == "cuda"
                          or (args.device == "auto" and torch.cuda.is_available()) else "cpu"}
    earlier = out / "results.json"
    if args.resume and earlier.is_file() and not same_settings(common.read_json(earlier), results):
        # refused before the corpora are prepared, which would rewrite that run's items and glyph sheets
        raise LmlabError(f"{earlier} was made with other settings or fonts: drop --resume or use another --out")
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
    done, earlier_s = finished_runs(out / "results.json", results) if args.resume else ({}, 0.0)
    for seed in seeds:  # seed-major: a run cut short still has every row for the first seeds
        for key in corpora:
            folder, tok_dir, val_fraction, held, items = prepared[key]
            for emb in embeddings:
                r = done.get((key, emb, seed)) or one_run(args, work / "runs" / f"{key}-{emb}-{seed}", folder, tok_dir,
                                                          val_fraction, emb, seed, items, held)
                per_seed.setdefault((key, emb), []).append(r)
                results[key]["runs"][emb] = summarise(per_seed[(key, emb)])
                results["claims"] = claims_of(results)
                timing = common.timing(start)
                results["timing"] = {**timing, "wall_s": timing["wall_s"] + earlier_s,
                                     "runs_done": sum(len(v) for v in per_seed.values()),
                                     **({"resumed_runs": len(done)} if done else {})}
                common.write_json(out / "results.json", results)
                write_report(results, out)
                print(f"{key:12s} {emb:9s} seed {seed}: val_bpb {r['val_bpb']:.4f}  mc acc {r['mc']['acc']:.3f} "
                      f"acc_norm {r['mc']['acc_norm']:.3f}  {r['tok_per_s']:.0f} tok/s", flush=True)
    return results


def run(args) -> int:
    from .frozen_glyph_report import check_page, claims_of, markdown, write_page, write_report

    command = command_of(args)  # before --quick fills in its sizes
    common.use_quick(args, QUICK)
    out = Path(args.out)
    if args.doc:  # a page it cannot fill is refused now, not after hours of runs
        check_page(args.doc)
    if args.render_only:
        results = common.read_json(out / "results.json")
        results["claims"] = claims_of(results)  # derived from the numbers: kept current with the verdict rules
        common.write_json(out / "results.json", results)
        write_report(results, out)
    else:
        corpora = common.names(args.corpora, CORPORA, "--corpora", "corpus")
        embeddings = common.names(args.embeddings, EMBEDDINGS, "--embeddings", "embedding")
        if args.steps < 1:
            raise LmlabError("--steps must be at least 1")
        seeds = common.numbers(args.seeds, int, "--seeds")
        if not seeds:
            raise LmlabError("--seeds is empty")
        out.mkdir(parents=True, exist_ok=True)
        results = measure(args, out, corpora, embeddings, seeds, command)
    print(markdown(results))
    if args.figures:
        fig_dir = Path(args.figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy(png, fig_dir / f"frozen-glyph-{png.name}")
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'curves.png'}")
    if args.doc:
        print(f"wrote {write_page(results, args.doc)} and its results JSON")
    return 0
