"""`lmlab import-hf DIR -o OUT`: a Hugging Face Llama, GPT-2 or GPT-NeoX directory as an lmlab run."""
from __future__ import annotations

from .common import existing, output_dir, print_json


def register(sub) -> None:
    p = sub.add_parser("import-hf", help="read a Hugging Face Llama, GPT-2 or GPT-NeoX directory into an lmlab run directory")
    p.add_argument("dir", metavar="DIR", type=existing("HF model directory", directory=True),
                   help="HF model directory (config.json + *.safetensors)")
    p.add_argument("-o", "--out", required=True, type=output_dir, help="new run directory")
    p.add_argument("--tokenizer", default="",
                   help="lmlab tokenizer directory, or 'byte' (default: DIR/lmlab_tokenizer, written by lmlab export)")
    p.set_defaults(func=run_import)


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
        model = Transformer(mcfg)
    except ValueError as e:
        raise LmlabError(f"import-hf: {e}") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise LmlabError(f"import-hf: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    with checkpoint.run_lock(out):  # one writer per run directory
        if (out / checkpoint.CKPT_DIR).exists():
            raise LmlabError(f"{out} already holds checkpoints; choose another -o")
        config_mod.save(cfg, out / "config.toml")
        ckpt = checkpoint.save(out, 0, model, None, tok, cfg,
                               {"tokens_seen": 0, "imported_from": str(Path(args.dir).resolve())})
    print_json({"checkpoint": str(ckpt), "family": hf.read_hf_config(args.dir)["model_type"],
                "params": model.num_params(), "tokenizer": tok.kind})
    return 0
