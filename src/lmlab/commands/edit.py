"""`lmlab edit RUN --curvature-mass RHO --data CORPUS -o OUT`: a new run whose FFN (optionally
attention) weights keep only their high-curvature K-FAC components (lmlab/analysis/curvature.py)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LmlabError


def register(sub) -> None:
    p = sub.add_parser("edit", help="remove low-curvature weight components (K-FAC); writes a new run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--curvature-mass", type=float, required=True, metavar="RHO",
                   help="fraction of the total curvature the kept components hold, in (0, 1]")
    p.add_argument("--data", required=True, help="text file or corpus spec the curvature is measured on")
    p.add_argument("-o", "--out", required=True, help="the new run directory (must not hold a run)")
    p.add_argument("--layers", default="ffn", help="comma-separated kinds: ffn, attn (default ffn)")
    p.add_argument("--max-tokens", type=int, default=65536, help="tokens to collect curvature on (0 = all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--random-control", action="store_true",
                   help="keep as many components per matrix as the curvature edit would, at random")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled labels (and the control)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import config as config_mod
    from ..analysis.curvature import KINDS, check_rho, edit_model
    from ..checkpoint import CKPT_DIR, read_state, resolve, save
    from ..data.corpora import read_corpus
    from ..data.shards import encode_documents
    from .common import load_model_arg, print_json

    check_rho(args.curvature_mass)  # before anything is read or written
    kinds = tuple(k.strip() for k in args.layers.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise LmlabError(f"--layers: unknown kind(s) {', '.join(bad) or repr(args.layers)}; valid: {', '.join(KINDS)}")
    out = Path(args.out)
    if (out / CKPT_DIR).exists() or (out / "config.toml").exists():
        raise LmlabError(f"{out} already holds a run; choose a new directory")
    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    ids = encode_documents(read_corpus(args.data, cfg.data.text_field, cfg.data.cache_dir), tokenizer)
    summary = edit_model(model, ids, args.curvature_mass, kinds, args.max_tokens, args.batch_size,
                         args.random_control, args.seed)
    step = read_state(resolve(args.run))["step"]
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.toml")
    save(out, step, model, None, tokenizer, cfg, {"edit": {**summary, "source": str(args.run), "data": args.data}})
    print_json({"out": str(out), **summary})
    return 0
