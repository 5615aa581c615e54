"""Training throughput: lmlab's training step vs an fp32 eager Hugging Face GPT-2 of the same shape.

    python benchmarks/train_vs_hf.py [-c shakespeare-char] [--batch 64] [--steps 6] [--threads 1]

Both models get the same batches of real tokens (tinyshakespeare, char tokenizer), steps alternate
(one lmlab step, one HF step) so load changes on a shared CPU hit both alike, and the ratio of median
step times is printed with the load average. lmlab's step is the training loop's: autocast to
train.dtype (auto = bf16 where the CPU has AMX/AVX512-BF16) with fp32 master weights, fused AdamW,
grad clipping. The baseline: transformers GPT2LMHeadModel, fp32, no compile, torch.optim.AdamW
defaults (foreach), the same clipping. Also reported: data-loader tokens/s over lmlab's tokens/s.
Needs the `hf` extra (transformers).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from lmlab import runtime

RUNTIME = runtime.configure()  # the same process settings as the lmlab command, for both sides

import torch  # noqa: E402


def step_fn(model, opt, batches, dtype, is_hf: bool):
    from lmlab.train.device import autocast

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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    from lmlab import bench, config
    from lmlab.data import loader
    from lmlab.train.device import pick_dtype
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
    hf_cfg = transformers.GPT2Config(vocab_size=m.vocab_size, n_embd=m.d_model, n_layer=m.n_layers, n_head=m.n_heads,
                                     n_positions=T, n_inner=4 * m.d_model,
                                     activation_function="gelu" if m.activation == "gelu" else "gelu_new",
                                     resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.dropout,
                                     tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    theirs = transformers.GPT2LMHeadModel(hf_cfg)
    ours.train(), theirs.train()
    dtype = pick_dtype(cfg.train.dtype, torch.device("cpu"))
    opt_ours = make_optimizer(ours, cfg.train, torch.device("cpu"))
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2),
                                   weight_decay=cfg.train.weight_decay)
    n = args.warmup + args.steps
    batches = [loader.random_batch(train_ids, B, T, 0, i) for i in range(n)]
    run_ours, s_ours = step_fn(ours, opt_ours, batches, dtype, False)
    run_theirs, s_theirs = step_fn(theirs, opt_theirs, batches, torch.float32, True)

    load_before = bench.loadavg()
    times = {"lmlab": [], "hf": []}
    for r in range(n):  # interleaved: one step each per round
        for name, fn in (("lmlab", run_ours), ("hf", run_theirs)):
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
        "benchmark": "train_vs_hf", "config": args.config, "batch": B, "context": T, "threads": args.threads,
        "lmlab_dtype": str(dtype).replace("torch.", ""), "baseline": "transformers GPT2LMHeadModel fp32 eager, AdamW foreach",
        "params_lmlab": ours.num_params(), "params_hf": sum(p.numel() for p in theirs.parameters()),
        "steps_timed": args.steps, "lmlab_step_ms": med["lmlab"] * 1e3, "hf_step_ms": med["hf"] * 1e3,
        "lmlab_tokens_per_s": tps["lmlab"], "hf_tokens_per_s": tps["hf"], "speedup": tps["lmlab"] / tps["hf"],
        "lmlab_losses": s_ours["losses"], "hf_losses": s_theirs["losses"],
        "loader_tokens_per_s": loader_tps, "loader_over_lmlab_train": loader_tps / tps["lmlab"],
        "loadavg_before": load_before, "loadavg_after": bench.loadavg(), "transformers": transformers.__version__, "process_settings": RUNTIME,
        "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
