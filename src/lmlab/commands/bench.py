"""`lmlab bench peak | bandwidth | train -c CONFIG | generate RUN_OR_CKPT`: throughput as JSON."""
from __future__ import annotations

from .common import COUNT, NONNEG_INT, add_config_args, add_run_args, load_model_arg, print_json


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure matmul peak, memory bandwidth, training or generation throughput (JSON)")
    verbs = p.add_subparsers(dest="bench_verb", metavar="{peak,bandwidth,train,generate}")
    verbs.required = True

    pk = verbs.add_parser("peak", help="fp32 and bf16 matmul GFLOP/s of this machine")
    pk.add_argument("--n", type=COUNT, default=2048, help="matrix size (default 2048)")
    pk.add_argument("--reps", type=COUNT, default=10)
    pk.add_argument("--device", default="auto")
    pk.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0 = default)")
    pk.set_defaults(func=run_peak)

    bw = verbs.add_parser("bandwidth", help="sustained memory read bandwidth (GB/s) at 1 and 2 threads")
    bw.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    bw.add_argument("--mb", type=int, default=512, help="buffer MiB, far above the last-level cache (default 512)")
    bw.add_argument("--reps", type=int, default=7, help="timed passes per measurement (default 7)")
    bw.set_defaults(func=run_bandwidth)

    tr = verbs.add_parser("train", help="tokens/s, step time, MFU and peak memory of the training loop")
    add_config_args(tr)
    tr.add_argument("--steps", type=COUNT, default=20, help="training steps to run, warm-up included")
    tr.add_argument("--warmup", type=NONNEG_INT, default=3, help="first steps not timed (default 3)")
    tr.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0 = default)")
    tr.set_defaults(func=run_train)

    ge = verbs.add_parser("generate", help="decode tokens/s at batch 1 and 16, time to first token, memory")
    add_run_args(ge, dtype="sampling precision as in `lmlab generate --dtype` (default: generate.dtype, auto)",
                 nargs="?", help="a trained model; or give -c CONFIG for randomly initialised weights (same speed)")
    add_config_args(ge)
    ge.add_argument("--new", type=COUNT, default=64, help="new tokens per timing (default 64)")
    ge.add_argument("--prompt", type=COUNT, default=1000, help="prompt length for time to first token (default 1000)")
    ge.add_argument("--batch", default="1,16", help="comma-separated batch sizes (default 1,16)")
    ge.add_argument("--reps", type=COUNT, default=3)
    ge.add_argument("--threads", type=NONNEG_INT, default=0, help="torch threads (0 = default)")
    ge.add_argument("--bandwidth", type=float, default=None, metavar="GBPS",
                    help="memory read bandwidth for the batch-1 roofline (default: measured at these threads, "
                    "as `lmlab bench bandwidth`)")
    ge.add_argument("--compile", action="store_true", help="torch.compile the decoder (generate.compile); "
                    "the compile time is reported as warmup_s, outside the timings")
    ge.set_defaults(func=run_generate)


def _positive(name: str, value: int) -> None:
    from ..errors import LmlabError

    if value < 1:
        raise LmlabError(f"{name} must be at least 1, got {value}")


def _int_list(name: str, text: str) -> list[int]:
    from ..errors import LmlabError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LmlabError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise LmlabError(f"{name} needs at least one value")
    for v in values:
        _positive(name, v)
    return values


def run_bandwidth(args) -> int:
    from .. import bench
    from ..errors import LmlabError

    threads = _int_list("--threads", args.threads)
    _positive("--mb", args.mb)
    _positive("--reps", args.reps)
    free_mb = bench.available_mb()
    if free_mb is not None and 2 * args.mb > free_mb / 2:  # two buffers (the copy's target), half the free memory
        raise LmlabError(f"--mb {args.mb} needs {2 * args.mb} MiB; at most half the available {free_mb:.0f} MiB may be used")
    print_json(bench.bandwidth(threads, args.mb, args.reps))
    return 0


def run_peak(args) -> int:
    from .. import bench
    from ..device import pick_device

    bench.set_threads(args.threads)
    print_json(bench.peak(args.n, args.reps, pick_device(args.device)))
    return 0


def run_train(args) -> int:
    from .. import bench
    from .. import config as config_mod
    from ..errors import LmlabError

    if not args.config:
        raise LmlabError("bench train needs -c CONFIG (a TOML file or a preset: tiny, demo, shakespeare-char)")
    bench.set_threads(args.threads)
    cfg = config_mod.load(args.config, args.overrides)
    print_json({"config": args.config, "overrides": args.overrides, **bench.train(cfg, args.steps, args.warmup)})
    return 0


def run_generate(args) -> int:
    from .. import bench
    from ..errors import LmlabError

    batches = _int_list("--batch", args.batch)
    if args.bandwidth is not None and not args.bandwidth > 0:
        raise LmlabError(f"--bandwidth must be a positive GB/s figure, got {args.bandwidth}")
    _positive("--new", args.new)
    _positive("--prompt", args.prompt)
    _positive("--reps", args.reps)
    bench.set_threads(args.threads)
    if bool(args.run) == bool(args.config):
        raise LmlabError("bench generate needs either RUN_OR_CKPT or -c CONFIG (random weights), not both")
    if args.config:
        from .. import config as config_mod
        from ..device import pick_device
        from ..train.loop import prepare

        cfg = config_mod.load(args.config, args.overrides)
        model = prepare(cfg, None)[3].to(pick_device(args.device))
        source = {"config": args.config, "overrides": args.overrides, "weights": "random init"}
    else:
        model, _, cfg = load_model_arg(args.run, args.device)
        source = {"run": args.run}
    from .generate import require_causal

    require_causal(cfg)
    from ..model.packed import PackedLinear
    from ..infer.prepare import for_inference

    params = model.num_params()  # before int8 or packing turns weights into buffers
    source["compiled"] = bool(args.compile or cfg.generate.compile)
    model = for_inference(model, args.dtype or cfg.generate.dtype, next(model.parameters()).device,
                          compile=source["compiled"])
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")  # norms and embeddings stay parameters
    if (args.dtype or cfg.generate.dtype) == "int8":
        dtype = f"int8 weights, {dtype} activations"
    elif (args.dtype or cfg.generate.dtype) == "w8a8":
        dtype = f"int8 weights, int8 activations (per token), {dtype} elsewhere"
    source["dtype"] = dtype + (", packed for oneDNN" if any(isinstance(m, PackedLinear) for m in model.modules()) else "")
    gbps, gbps_source = args.bandwidth, "--bandwidth"
    if gbps is None and 1 in batches:  # the roofline is for batch 1
        import torch

        threads = torch.get_num_threads()
        gbps = bench.bandwidth((threads,), reps=5)["by_threads"][str(threads)]["read_gbps"]
        gbps_source = f"measured before decoding: read_gbps of `lmlab bench bandwidth --threads {threads} --reps 5`"
    result = bench.generate(model, batches, args.new, args.prompt, args.reps, params=params, bandwidth_gbps=gbps)
    if "batch1_roofline" in result:
        result["batch1_roofline"]["bandwidth_source"] = gbps_source
    print_json({**source, **result})
    return 0
