"""`lmlab export RUN_OR_CKPT --to hf DIR` and `lmlab import-hf DIR -o OUT` (Llama and GPT-2 families)."""
from __future__ import annotations

from .common import add_run_args, existing, load_model_arg, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face model directory (Llama or GPT-2)")
    add_run_args(p, device=False)
    p.add_argument("--to", required=True, choices=["hf"], help="target format")
    p.add_argument("dir", metavar="DIR", type=output_dir, help="output directory (config.json, model.safetensors, tokenizer files)")
    p.add_argument("--no-check", action="store_true",
                   help="skip loading the result with transformers (done when it is installed) to compare logits")
    p.set_defaults(func=run_export)

    q = sub.add_parser("import-hf", help="read a Hugging Face Llama or GPT-2 directory into an lmlab run directory")
    q.add_argument("dir", metavar="DIR", type=existing("HF model directory", directory=True), help="HF model directory (config.json + *.safetensors)")
    q.add_argument("-o", "--out", required=True, type=output_dir, help="new run directory")
    q.add_argument("--tokenizer", default="",
                   help="lmlab tokenizer directory, or 'byte' (default: DIR/lmlab_tokenizer, written by lmlab export)")
    q.set_defaults(func=run_import)


def hf_logit_diff(model, hf_dir, n_tokens: int = 32) -> float | None:
    """Max |logit difference| between the lmlab model and transformers on the exported files, or None
    when transformers is not installed."""
    try:
        import transformers
    except ImportError:
        return None
    import torch

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, model.cfg.vocab_size, (2, min(n_tokens, model.cfg.context)), generator=gen)
    with torch.no_grad():
        ours = model.float()(idx)[0]
        theirs = hf(idx).logits
    return float((ours - theirs).abs().max())


def run_export(args) -> int:
    from pathlib import Path

    from .. import hf
    from ..errors import LmlabError

    model, tokenizer, cfg = load_model_arg(args.run)
    model = model.cpu().float()
    hf.family(cfg.model)  # fails early, before anything is written
    out = Path(args.dir)
    if (out / "config.json").exists():
        raise LmlabError(f"{out} already holds a config.json; choose another directory")
    report = hf.export(model, tokenizer, out)
    if not args.no_check:
        diff = hf_logit_diff(model, out)
        report["max_abs_logit_diff"] = diff if diff is not None else "not checked (transformers is not installed)"
        if diff is not None and not diff <= 1e-4:
            raise LmlabError(f"export: transformers gives logits {diff:.3g} away from lmlab's; the files are in {out}")
    print_json(report)
    return 0


def _import_tokenizer(args, vocab_size: int):
    from pathlib import Path

    from .. import tokenizers
    from ..errors import LmlabError

    if args.tokenizer == "byte":
        from ..tokenizers.byte import ByteTokenizer

        tok = ByteTokenizer()
    elif args.tokenizer:
        tok = tokenizers.load(args.tokenizer)
    elif (Path(args.dir) / "lmlab_tokenizer").is_dir():
        tok = tokenizers.load(Path(args.dir) / "lmlab_tokenizer")
    else:
        raise LmlabError(f"{args.dir} has no lmlab_tokenizer/; pass --tokenizer DIR (an lmlab tokenizer) or --tokenizer byte")
    if tok.vocab_size > vocab_size:
        raise LmlabError(f"tokenizer has {tok.vocab_size} ids but the model only {vocab_size}")
    return tok


def run_import(args) -> int:
    from pathlib import Path

    from .. import config as config_mod
    from .. import hf
    from ..errors import LmlabError
    from ..model import Transformer
    from .. import checkpoint

    out = Path(args.out)
    if (out / checkpoint.CKPT_DIR).exists():
        raise LmlabError(f"{out} already holds checkpoints; choose another -o")
    mcfg, tensors = hf.load_hf_dir(args.dir)
    tok = _import_tokenizer(args, mcfg.vocab_size)
    cfg = config_mod.Config(model=mcfg)
    cfg.tokenizer.kind = tok.kind
    try:
        model = Transformer(mcfg, tok)
    except ValueError as e:
        raise LmlabError(f"import-hf: {e}") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise LmlabError(f"import-hf: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.toml")
    ckpt = checkpoint.save(out, 0, model, None, tok, cfg, {"tokens_seen": 0, "imported_from": str(Path(args.dir).resolve())})
    print_json({"checkpoint": str(ckpt), "family": hf.read_hf_config(args.dir)["model_type"],
                "params": model.num_params(), "tokenizer": tok.kind})
    return 0
