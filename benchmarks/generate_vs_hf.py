"""Generation throughput: lmlab's KV-cache decoder vs transformers `generate()` on the same weights.

    python benchmarks/generate_vs_hf.py [RUN] [--new 128] [--reps 3] [--threads 1] [--batch 1]

Without RUN, a randomly initialised model of the shakespeare-char shape (GPT-2 family: learned
positions, LayerNorm, GELU; speed does not depend on the weights) is used. The model is exported with
`lmlab.hf.export` and loaded by transformers (fp32, default attention); both sample with the same
settings (temperature 0.8, no top-k/top-p, KV cache), from the same 8-token prompt, for exactly
--new tokens. Runs alternate (lmlab, HF, lmlab, ...) and medians are compared. Needs the `hf` extra.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from lmlab import runtime

RUNTIME = runtime.configure()  # the same process settings as the lmlab command, for both sides

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--dtype", default="auto", help="lmlab's sampling precision (generate.dtype: auto = bf16 where native, float32, bfloat16, int8)")
    ap.add_argument("--compile", action="store_true", help="torch.compile lmlab's decoder (generate.compile); "
                    "the warm-up round compiles, untimed")
    ap.add_argument("--hf-dtype", default="float32", help="the baseline's dtype (float32 or bfloat16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    from lmlab import bench, config, hf
    from lmlab.infer.generate import decode_steps
    from lmlab.model import Transformer

    if args.run:
        from lmlab.checkpoint import load_model

        model = load_model(args.run)[0]
    else:
        cfg = config.load("shakespeare-char").model
        cfg.vocab_size, cfg.dropout = 322, 0.0  # 322 = the char tokenizer's size on tinyshakespeare
        torch.manual_seed(0)
        model = Transformer(cfg)
    model = model.float().eval()
    n_new = min(args.new, model.cfg.context - 8)
    with tempfile.TemporaryDirectory() as tmp:
        hf.export(model, None, tmp)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=getattr(torch, args.hf_dtype)).eval()
    from lmlab.model.packed import PackedLinear
    from lmlab.infer.prepare import for_inference

    params = model.num_params()  # before int8 turns weights into buffers
    # after export: both start from the same fp32 weights
    model = for_inference(model, args.dtype, torch.device("cpu"), compile=args.compile)
    prompt = torch.randint(0, model.cfg.vocab_size, (args.batch, 8), generator=torch.Generator().manual_seed(0))

    def ours_run(seed):
        out = list(decode_steps(model, prompt, n_new, temperature=args.temperature, seed=seed))
        assert len(out) == n_new

    def theirs_run(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                  temperature=args.temperature, top_k=0, top_p=1.0, max_new_tokens=n_new,
                                  min_new_tokens=n_new, use_cache=True, pad_token_id=0)
        assert out.shape[1] == prompt.shape[1] + n_new

    load_before = bench.loadavg()
    times = {"lmlab": [], "hf": []}
    for r in range(args.reps + 1):  # round 0 warms both up
        for name, fn in (("lmlab", ours_run), ("hf", theirs_run)):
            t = time.perf_counter()
            fn(r)
            if r:
                times[name].append(time.perf_counter() - t)
    tps = {k: args.batch * n_new / statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "benchmark": "generate_vs_hf", "run": args.run or "random shakespeare-char shape (GPT-2 family)",
        "params": params, "batch": args.batch, "new_tokens": n_new, "prompt_tokens": 8,
        "threads": args.threads, "temperature": args.temperature, "lmlab_tokens_per_s": tps["lmlab"],
        "hf_tokens_per_s": tps["hf"], "speedup": tps["lmlab"] / tps["hf"],
        "lmlab_dtype": ("int8 weights, bfloat16 activations" if args.dtype == "int8"
                        else str(next(model.parameters()).dtype).replace("torch.", "")), "hf_dtype": args.hf_dtype,
        "lmlab_packed": any(isinstance(m, PackedLinear) for m in model.modules()),
        "lmlab_compiled": args.compile,
        "note": "times include the 8-token prefill", "process_settings": RUNTIME,
        "loadavg_before": load_before, "loadavg_after": bench.loadavg(), "transformers": transformers.__version__,
        "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
