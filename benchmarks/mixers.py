"""Sequence-mixer speed, attention (A) as the baseline in the same run, plus device checks.

Prints one JSON object: for each sequence length, forward+backward tokens/s of one pre-norm
sublayer of each kind (A, M, L) and the ratio to A; decode tokens/s of one token with the cache;
and on the same device the exactness checks (parallel == recurrent scans, cached == full
logits for hybrid and meta-token models, a bf16 autocast training step that stays finite).

    python benchmarks/mixers.py                  # CUDA if present, else a small CPU run
    python benchmarks/mixers.py --lengths 256,1024 --d-model 256 --batch 4
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lmlab.config import ModelConfig
from lmlab.model import Transformer
from lmlab.model.block import MIXERS, Residual
from lmlab.model.mixers.lmu import LMUMixer
from lmlab.model.mixers.ssm import ssd_recurrent, ssd_scan


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    fn()
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sublayer_speed(letter, cfg, device, batch, T, repeats, dtype):
    torch.manual_seed(0)
    sub = Residual(cfg, MIXERS[letter][1](cfg, 0)).to(device)
    model = Transformer(cfg).to(device)  # only for its RoPE tables
    rope = model.rope(T)
    x = torch.randn(batch, T, cfg.d_model, device=device, requires_grad=True)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = sub(x, rope=rope, cache=None, start_pos=0)
        y.float().square().mean().backward()

    train_s = timed(step, device, repeats)

    # decode: time single-token steps after a prefilled cache of T-1 tokens
    cache = {"max_len": T + 8}
    with torch.no_grad():
        sub(x[:, :T - 8].detach(), rope=rope, cache=cache, start_pos=0)
        sync(device)
        t0 = time.perf_counter()
        for t in range(T - 8, T):
            sub(x[:, t:t + 1].detach(), rope=rope, cache=cache, start_pos=t)
        sync(device)
        dec_s = (time.perf_counter() - t0) / 8
    return {"train_tok_per_s": batch * T / train_s, "decode_tok_per_s": batch / dec_s}


def checks(device) -> dict:
    torch.manual_seed(0)
    out = {}
    b, T, h, p, n = 2, 300, 4, 16, 16
    x, dt = torch.randn(b, T, h, p, device=device), torch.rand(b, T, h, device=device) * 0.3
    A, B, C = -torch.rand(h, device=device), torch.randn(b, T, n, device=device), torch.randn(b, T, n, device=device)
    y1, S1 = ssd_scan(x, dt, A, B, C, chunk=64)
    y2, S2 = ssd_recurrent(x, dt, A, B, C)
    out["ssd_scan_vs_recurrent_max_abs"] = float((y1 - y2).abs().max())
    lmu = LMUMixer(ModelConfig(d_model=64, context=256, vocab_size=10)).to(device)
    u = torch.randn(2, 256, lmu.c, device=device)
    m, _ = lmu.memory(u)
    s = torch.zeros(2, lmu.c, lmu.q, device=device)
    steps = []
    for t in range(256):
        s = lmu.step(u[:, t], s)
        steps.append(s)
    out["lmu_fft_vs_recurrent_max_abs"] = float((m - torch.stack(steps, 1)).abs().max())
    for name, kw in [("AMF MF", {}), ("ALF LF", {}), ("AF+meta", {"meta_tokens": 3})]:
        pattern = name.split("+")[0]
        cfg = ModelConfig(n_layers=2, d_model=64, n_heads=4, context=128, vocab_size=50, pattern=pattern, **kw)
        torch.manual_seed(0)
        model = Transformer(cfg).to(device).eval()
        ids = torch.randint(0, 50 + cfg.meta_tokens, (2, 100), device=device)
        with torch.no_grad():
            full = model(ids)[0]
            cache = model.new_cache(128)
            parts = [model(ids[:, :37], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(37, 100)]
        out[f"cached_vs_full_max_abs[{name}]"] = float((torch.cat(parts, 1) - full).abs().max())
        model.train()
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _, loss = model(ids[:, :-1].clamp(max=49), ids[:, 1:].clamp(max=49))
            loss.backward()
            out[f"bf16_train_loss_finite[{name}]"] = bool(torch.isfinite(loss)) and all(
                torch.isfinite(q.grad).all().item() for q in model.parameters() if q.grad is not None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lengths", default="")
    ap.add_argument("--d-model", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="autocast bf16 for the speed part (CUDA)")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    lengths = [int(v) for v in args.lengths.split(",") if v] or ([512, 2048, 8192] if gpu else [128, 512])
    d = args.d_model or (512 if gpu else 128)
    batch = args.batch or (8 if gpu else 2)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    report = {"device": torch.cuda.get_device_name() if gpu else "cpu", "torch": torch.__version__,
              "d_model": d, "batch": batch, "dtype": str(dtype), "checks": checks(device), "speed": {}}
    for T in lengths:
        cfg = ModelConfig(d_model=d, n_heads=max(1, d // 64), context=T, vocab_size=10)
        row = {letter: sublayer_speed(letter, cfg, device, batch, T, args.repeats, dtype) for letter in "AML"}
        for letter in "ML":
            for k in ("train_tok_per_s", "decode_tok_per_s"):
                row[letter][k.replace("tok_per_s", "vs_A")] = row[letter][k] / row["A"][k]
        report["speed"][T] = row
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
