"""The NCCL paths on the GPUs of one machine: DDP, FSDP2, FSDP2 + optimizer offload, TP (and
FSDP x TP with 4 or more GPUs), a few training steps each under torchrun, through lmlab's own
wrapping (lmlab.train.parallel).

    python benchmarks/parallel_gpu.py                        # every CUDA GPU here, the 124M shape
    python benchmarks/parallel_gpu.py --gpus 1 --steps 20    # one GPU: see "one rank" below
    python benchmarks/parallel_gpu.py --device cpu --quick   # the same code on 2 gloo CPU processes

Prints JSON: the device name, the peak the MFU is taken against (a bf16 matmul measured on the
device in this run, or --peak-tflops), and per layout: tokens/s (global tokens per step / median
step time over the steps after the first two), MFU, `torch.cuda.max_memory_allocated` per rank
(on CPU: peak RSS per rank), the bytes of weights / gradients / optimizer state each rank holds
by device type, and the first and last loss; then the device memory offload saves against FSDP
without it. Data are random token ids (no corpus needed), the same batches for every layout.

One rank (--gpus 1): lmlab's wrap leaves a one-process model unwrapped, so there the script
applies FSDP2 itself over the one-rank group (lmlab.train.parallel.fsdp_shard): FSDP's and
offload's rows still show the memory accounting (offload moves the weights, gradients and AdamW
state to the host, so max_memory_allocated falls), while DDP and TP over one rank split nothing
and are reported as skipped. Without CUDA (and without --device cpu) it exits 2 with one line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

SHAPES = {  # stated configs: the demo preset resized (vocabulary given: random data, no tokenizer)
    "124m": ["model.n_layers=12", "model.d_model=768", "model.n_heads=12", "model.context=1024",
             "model.vocab_size=50304", "train.batch_size=8"],
    "quick": ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.context=32",
              "model.vocab_size=256", "train.batch_size=4"],
}


def layouts(ranks: int) -> list[dict]:
    rows = [{"name": "ddp", "parallel": "ddp", "offload": ""},
            {"name": "fsdp", "parallel": "fsdp", "offload": ""},
            {"name": "fsdp offload", "parallel": "fsdp", "offload": "optimizer"},
            {"name": "tp", "parallel": "tp", "offload": ""}]
    if ranks >= 4:
        rows.append({"name": f"fsdp+tp (tp {ranks // 2})", "parallel": "fsdp+tp", "offload": "", "tp": ranks // 2})
    return rows


# --- one rank's work (under torchrun) --------------------------------------------------------------
def worker(args) -> None:
    import torch.distributed as dist

    from lmlab import config
    from lmlab.device import autocast, pick_dtype
    from lmlab.model import Transformer
    from lmlab.train import parallel as par
    from lmlab.train.optim import make_optimizer

    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # lmlab's checks refuse offload on one rank
    cfg = config.load("demo", [*SHAPES[args.shape], *args.set, f"train.parallel={args.parallel}",
                               f"train.offload={args.offload if several else ''}", f"train.tp_size={args.tp}"])
    device = torch.device(args.device)
    device, _ = par.init(device, cfg)
    if not dist.is_initialized():  # one rank: torchrun's rendezvous still gives a group for FSDP2
        if device.type == "cuda":
            device = torch.device("cuda", 0)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    tc, mc = cfg.train, cfg.model
    torch.manual_seed(tc.seed)
    model = Transformer(mc).to(device)
    flops_per_token = model.flops_per_token(mc.context)["train"]
    if par.world() == 1 and args.parallel == "fsdp":
        wrapped = par.fsdp_shard(model, device, None, args.offload)
    else:
        wrapped = par.wrap(model, device, args.parallel, args.tp, args.offload)
    optimizer = make_optimizer(model, tc, device)
    dtype = pick_dtype(tc.dtype, device)
    tokens_per_step = tc.batch_size * mc.context * par.dp_world()
    times, losses = [], []
    for step in range(args.steps):
        g = torch.Generator().manual_seed(1000 * step + par.dp_rank())  # a tp group shares its batch
        ids = torch.randint(mc.vocab_size, (tc.batch_size, mc.context + 1), generator=g).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with par.micro_step(wrapped, last=True):
            with autocast(device, dtype):
                _, loss = wrapped(ids[:, :-1], ids[:, 1:])
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach().float().mean()))
    mine = {"rank": par.rank(), "state_bytes": par.memory_accounting(model, optimizer),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.type == "cuda":
        mine["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    gathered = [None] * par.world()
    dist.all_gather_object(gathered, mine)
    if par.rank() == 0:
        step_s = statistics.median(times[2:] or times)
        print(json.dumps({"tokens_per_step": tokens_per_step, "step_s": step_s, "tokens_per_s": tokens_per_step / step_s,
                          "flops_per_token": flops_per_token, "params": model.num_params(),
                          "loss_first": losses[0], "loss_last": losses[-1], "ranks": gathered}))
    dist.destroy_process_group()


# --- the launcher ----------------------------------------------------------------------------------
def peak_tflops(device: str) -> float:
    from lmlab import bench

    dtype = torch.bfloat16
    n = 8192 if device == "cuda" else 512
    return bench.matmul_gflops(dtype, n, 10 if device == "cuda" else 3, device)["best_gflops"] / 1e3


def run_layout(args, row: dict, ranks: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
           os.path.abspath(__file__), "--worker", "--device", args.device, "--shape", args.shape,
           "--steps", str(args.steps), "--parallel", row["parallel"], "--offload", row["offload"],
           "--tp", str(row.get("tp", 0)), *sum((["--set", s] for s in args.set), [])]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.strip()][-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--gpus", type=int, default=0, help="ranks (default: every CUDA GPU; 2 on --device cpu)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default 124m (quick with --quick)")
    ap.add_argument("--steps", type=int, default=0, help="steps per layout (default 12; 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="the tiny shape, 3 steps: a check that the paths run")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="peak per device for MFU (default: measured)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per layout (default 300)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--parallel", default="ddp", help=argparse.SUPPRESS)
    ap.add_argument("--offload", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tp", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.shape = args.shape or ("quick" if args.quick else "124m")
    args.steps = args.steps or (3 if args.quick else 12)
    if args.worker:
        worker(args)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; this benchmark needs GPUs (or run it with --device cpu --quick)",
              file=sys.stderr)
        return 2
    if args.steps < 3 or args.gpus < 0 or args.peak_tflops < 0 or args.timeout < 1:
        print("error: --steps must be >= 3, --gpus, --peak-tflops >= 0 and --timeout >= 1", file=sys.stderr)
        return 2
    available = torch.cuda.device_count() if args.device == "cuda" else os.cpu_count() or 1
    ranks = args.gpus or (available if args.device == "cuda" else 2)
    if args.device == "cuda" and ranks > available:
        print(f"error: --gpus {ranks} but {available} CUDA device(s) here", file=sys.stderr)
        return 2
    peak = args.peak_tflops or peak_tflops(args.device)
    out = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "ranks": ranks, "shape": args.shape, "settings": SHAPES[args.shape] + args.set, "steps": args.steps,
           "peak_tflops": peak, "peak_source": "given" if args.peak_tflops else "bf16 matmul measured here",
           "torch": torch.__version__, "load_avg": os.getloadavg(), "rows": []}
    for row in layouts(ranks):
        entry = {"layout": row["name"], "parallel": row["parallel"], "offload": row["offload"]}
        if ranks == 1 and row["parallel"] in ("ddp", "tp"):
            entry["skipped"] = f"{row['parallel']} over one rank splits nothing"
        else:
            entry.update(run_layout(args, row, ranks))
            if "tokens_per_s" in entry:
                entry["mfu"] = entry["flops_per_token"] * entry["tokens_per_s"] / (ranks * peak * 1e12)
        out["rows"].append(entry)
    out["offload_saved"] = offload_saving(out["rows"])
    print(json.dumps(out, indent=1))
    return 0 if all("error" not in r for r in out["rows"]) else 1


def offload_saving(rows: list[dict]) -> dict:
    """Per rank, the device peak (CUDA: max_memory_allocated; CPU: RSS) of FSDP minus FSDP + offload."""
    by = {r["layout"]: r for r in rows if "ranks" in r}
    if "fsdp" not in by or "fsdp offload" not in by:
        return {}
    key = "max_memory_allocated_bytes" if "max_memory_allocated_bytes" in by["fsdp"]["ranks"][0] else "peak_rss_bytes"
    saved = [a[key] - b[key] for a, b in zip(by["fsdp"]["ranks"], by["fsdp offload"]["ranks"])]
    return {"measure": key, "bytes_per_rank": saved,
            "step_time_ratio": by["fsdp offload"]["step_s"] / by["fsdp"]["step_s"]}


if __name__ == "__main__":
    sys.exit(main())
