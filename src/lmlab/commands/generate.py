"""`lmlab generate RUN_OR_CKPT --prompt TEXT [...]`: streams the continuation to stdout."""
from __future__ import annotations

import sys

from ..errors import LmlabError
from .common import COUNT, add_run_args, existing, field_type, load_model_arg
from .inference_options import add_generate_options, run_generate_options


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a trained model")
    add_run_args(p, dtype="sampling precision: auto (bf16 where the CPU/GPU runs it natively), float32, "
                          "bfloat16, int8 (int8 weights, bf16 activations), or w8a8 (int8 weights and "
                          "activations, as llama.cpp's q8_0; the fastest on a CPU). Default: the config's "
                          "generate.dtype; --beam/--knn/... run in float32")
    p.add_argument("--prompt", help="prompt text (default: the config's first generate.prompts entry)")
    p.add_argument("--prompt-file", type=existing("prompt file", stdin=True),
                   help="read the prompt from a UTF-8 file ('-' for stdin)")
    p.add_argument("--max-new-tokens", type=field_type("generate.max_new_tokens"))
    p.add_argument("--temperature", type=field_type("generate.temperature"), help="0 = greedy")
    p.add_argument("--top-k", type=field_type("generate.top_k"), help="0 = off")
    p.add_argument("--top-p", type=field_type("generate.top_p"))
    p.add_argument("--repetition-penalty", type=field_type("generate.repetition_penalty"))
    p.add_argument("--seed", type=field_type("generate.seed"))
    p.add_argument("--stop", action="append", help="stop at this string (repeatable)")
    p.add_argument("--num-samples", type=COUNT, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder (generate.compile; plain "
                   "sampling only): faster per token after 15-50 s of compiling")
    add_generate_options(p)
    p.set_defaults(func=run)


def settings(args, gcfg) -> dict:
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else getattr(gcfg, name)
    return {"max_new_tokens": pick("max_new_tokens"), "temperature": pick("temperature"), "top_k": pick("top_k"),
            "top_p": pick("top_p"), "repetition_penalty": pick("repetition_penalty"), "seed": pick("seed"),
            "stop": args.stop if args.stop is not None else list(gcfg.stop)}


def require_causal(cfg) -> None:
    if not cfg.model.causal or cfg.train.objective == "mlm":
        raise LmlabError("generation needs a causal model (this one was trained with model.causal = false "
                         "or train.objective = \"mlm\")")


def prompt_text(args, gcfg) -> str:
    from .common import read_stdin_text, read_text_file

    if args.prompt_file:
        return read_stdin_text() if args.prompt_file == "-" else read_text_file(args.prompt_file, "prompt file")
    if args.prompt is not None:
        return args.prompt
    return gcfg.prompts[0] if gcfg.prompts else ""


def run(args) -> int:
    from ..infer.generate import generate
    from ..infer.prepare import for_inference

    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    require_causal(cfg)
    prompt = prompt_text(args, cfg.generate)
    if not prompt:
        raise LmlabError("the prompt is empty; give at least one character")
    kw = settings(args, cfg.generate)
    if run_generate_options(args, model, tokenizer, prompt, kw) is not None:  # --beam, --icn, --knn, ...
        return 0
    compile = args.compile or cfg.generate.compile
    model = for_inference(model, args.dtype or cfg.generate.dtype, next(model.parameters()).device,
                          compile=compile)
    if compile:  # the first token waits for it: say why
        print("compiling the decoder at the first token: tens of seconds, once per process", file=sys.stderr)
    for i in range(args.num_samples):
        if i:
            sys.stdout.write("\n---\n")
        sys.stdout.write(prompt)
        generate(model, tokenizer, prompt, **{**kw, "seed": kw["seed"] + i},
                 stream=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        sys.stdout.write("\n")
    return 0
