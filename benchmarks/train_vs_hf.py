"""Training throughput: lmlab's training step vs an fp32 eager baseline of the same shape.

    python benchmarks/train_vs_hf.py [-c shakespeare-char] [--batch 64] [--steps 6] [--threads 1]
    python benchmarks/train_vs_hf.py --baseline nanogpt --nanogpt PATH/TO/nanoGPT [...]

Both models get the same batches of real tokens (tinyshakespeare, char tokenizer), steps alternate
(one lmlab step, one baseline step) so load changes on a shared CPU hit both alike, and the ratio of
median step times is printed with the load average. lmlab's step is the training loop's: autocast to
train.dtype (auto = bf16 where the CPU has AMX/AVX512-BF16) with fp32 master weights, fused AdamW,
grad clipping. Baselines, both fp32 and uncompiled, as they train on a CPU:
- hf: transformers GPT2LMHeadModel, torch.optim.AdamW defaults (foreach), the same clipping
  (needs the `hf` extra);
- nanogpt: the GPT of a nanoGPT checkout (github.com/karpathy/nanoGPT; its model.py is imported
  from --nanogpt, never copied into lmlab) with its own configure_optimizers, the same clipping.
Also reported: data-loader tokens/s over lmlab's tokens/s.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

from lmlab import runtime

RUNTIME = runtime.configure()  # the same process settings as the lmlab command, for both sides

import torch  # noqa: E402


def step_fn(model, opt, batches, dtype, is_hf: bool = False):
    from lmlab.device import autocast

    state = {"i": 0, "losses": []}
    device = torch.device("cpu")

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        with autocast(device, dtype):
            if is_hf:
                logits = model(x).logits
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            else:
                _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())

    return step, state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--config", default="shakespeare-char")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0 = the config's train.batch_size)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="", help="lmlab train.dtype (default: the config's, auto)")
    ap.add_argument("--baseline", choices=("hf", "nanogpt"), default="hf")
    ap.add_argument("--nanogpt", default="", help="a nanoGPT checkout (for --baseline nanogpt)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lmlab import bench, config
    from lmlab.data import loader
    from lmlab.device import pick_dtype
    from lmlab.train.loop import prepare
    from lmlab.train.optim import make_optimizer

    cfg = config.load(args.config)
    if args.dtype:
        cfg.train.dtype = args.dtype
    B = args.batch or cfg.train.batch_size
    T = cfg.model.context
    torch.manual_seed(0)
    tok, train_ids, _, ours = prepare(cfg, None)
    m = cfg.model
    if args.baseline == "hf":
        theirs, opt_theirs, version = hf_baseline(m, T, cfg.train)
    else:
        theirs, opt_theirs, version = nanogpt_baseline(args.nanogpt, m, T, cfg.train)
    ours.train(), theirs.train()
    dtype = pick_dtype(cfg.train.dtype, torch.device("cpu"))
    opt_ours = make_optimizer(ours, cfg.train, torch.device("cpu"))
    n = args.warmup + args.steps
    batches = [tuple(t.contiguous() for t in loader.random_batch(train_ids, B, T, 0, i)) for i in range(n)]
    run_ours, s_ours = step_fn(ours, opt_ours, batches, dtype, False)
    run_theirs, s_theirs = step_fn(theirs, opt_theirs, batches, torch.float32, args.baseline == "hf")

    load_before = bench.loadavg()
    base = args.baseline
    times = {"lmlab": [], base: []}
    for r in range(n):  # interleaved: one step each per round
        for name, fn in (("lmlab", run_ours), (base, run_theirs)):
            t = time.perf_counter()
            fn()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: B * T / v for k, v in med.items()}
    # data loader: the same random_batch calls the loop makes, timed alone
    t = time.perf_counter()
    k = 0
    while time.perf_counter() - t < 1.0:
        loader.random_batch(train_ids, B, T, 0, k)
        k += 1
    loader_tps = k * B * T / (time.perf_counter() - t)
    print(json.dumps({
        "benchmark": f"train_vs_{base}", "config": args.config, "batch": B, "context": T, "threads": args.threads,
        "lmlab_dtype": str(dtype).replace("torch.", ""), "baseline": BASELINES[base], f"{base}_version": version,
        "params_lmlab": ours.num_params(), f"params_{base}": sum(p.numel() for p in theirs.parameters()),
        "steps_timed": args.steps, "lmlab_step_ms": med["lmlab"] * 1e3, f"{base}_step_ms": med[base] * 1e3,
        "lmlab_tokens_per_s": tps["lmlab"], f"{base}_tokens_per_s": tps[base], "speedup": tps["lmlab"] / tps[base],
        "lmlab_losses": s_ours["losses"], f"{base}_losses": s_theirs["losses"],
        "loader_tokens_per_s": loader_tps, "loader_over_lmlab_train": loader_tps / tps["lmlab"],
        "loadavg_before": load_before, "loadavg_after": bench.loadavg(), "process_settings": RUNTIME,
        "torch": torch.__version__}, indent=1))


BASELINES = {"hf": "transformers GPT2LMHeadModel fp32 eager, AdamW foreach",
             "nanogpt": "nanoGPT GPT fp32 eager, its configure_optimizers (AdamW foreach on CPU)"}


def hf_baseline(m, T, tc):
    import transformers

    hf_cfg = transformers.GPT2Config(vocab_size=m.vocab_size, n_embd=m.d_model, n_layer=m.n_layers, n_head=m.n_heads,
                                     n_positions=T, n_inner=4 * m.d_model,
                                     activation_function="gelu" if m.activation == "gelu" else "gelu_new",
                                     resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.dropout,
                                     tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(hf_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    return model, opt, transformers.__version__


def nanogpt_baseline(path, m, T, tc):
    import subprocess
    from pathlib import Path

    if not path or not (Path(path) / "model.py").is_file():
        sys.exit("--baseline nanogpt needs --nanogpt DIR, a checkout of github.com/karpathy/nanoGPT (DIR/model.py)")
    if m.activation != "gelu":
        sys.exit("nanoGPT's MLP uses exact GELU: compare with a config whose model.activation is gelu")
    sys.path.insert(0, str(Path(path).resolve()))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    with contextlib.redirect_stdout(sys.stderr):  # it prints its parameter counts
        model = GPT(GPTConfig(block_size=T, vocab_size=m.vocab_size, n_layer=m.n_layers, n_head=m.n_heads,
                              n_embd=m.d_model, dropout=m.dropout, bias=m.bias))
        opt = model.configure_optimizers(tc.weight_decay, tc.lr, (tc.beta1, tc.beta2), "cpu")
    rev = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    return model, opt, rev.strip() or "unknown"


if __name__ == "__main__":
    main()
