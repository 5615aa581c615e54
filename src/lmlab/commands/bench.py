"""`lmlab bench peak | train -c CONFIG | generate RUN_OR_CKPT`: throughput as JSON."""
from __future__ import annotations

from .common import add_config_args, load_model_arg, print_json


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure matmul peak, training or generation throughput (JSON)")
    verbs = p.add_subparsers(dest="bench_verb", metavar="{peak,train,generate}")
    verbs.required = True

    pk = verbs.add_parser("peak", help="fp32 and bf16 matmul GFLOP/s of this machine")
    pk.add_argument("--n", type=int, default=2048, help="matrix size (default 2048)")
    pk.add_argument("--reps", type=int, default=10)
    pk.add_argument("--device", default="auto")
    pk.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    pk.set_defaults(func=run_peak)

    tr = verbs.add_parser("train", help="tokens/s, step time, MFU and peak memory of the training loop")
    add_config_args(tr)
    tr.add_argument("--steps", type=int, default=20, help="training steps to run, warm-up included")
    tr.add_argument("--warmup", type=int, default=3, help="first steps not timed (default 3)")
    tr.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    tr.set_defaults(func=run_train)

    ge = verbs.add_parser("generate", help="decode tokens/s at batch 1 and 16, time to first token, memory")
    ge.add_argument("run", metavar="RUN_OR_CKPT", nargs="?",
                    help="a trained model; or give -c CONFIG for randomly initialised weights (same speed)")
    add_config_args(ge)
    ge.add_argument("--new", type=int, default=64, help="new tokens per timing (default 64)")
    ge.add_argument("--prompt", type=int, default=1000, help="prompt length for time to first token (default 1000)")
    ge.add_argument("--batch", default="1,16", help="comma-separated batch sizes (default 1,16)")
    ge.add_argument("--reps", type=int, default=3)
    ge.add_argument("--device", default="auto")
    ge.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ge.add_argument("--dtype", help="sampling precision as in `lmlab generate --dtype` (default: generate.dtype, auto)")
    ge.add_argument("--compile", action="store_true", help="torch.compile the decoder (generate.compile); "
                    "the compile time is reported as warmup_s, outside the timings")
    ge.set_defaults(func=run_generate)


def _positive(name: str, value: int) -> None:
    from ..errors import LmlabError

    if value < 1:
        raise LmlabError(f"{name} must be at least 1, got {value}")


def run_peak(args) -> int:
    from .. import bench
    from ..device import pick_device

    _positive("--n", args.n)
    _positive("--reps", args.reps)
    bench.set_threads(args.threads)
    print_json(bench.peak(args.n, args.reps, pick_device(args.device)))
    return 0


def run_train(args) -> int:
    from .. import bench
    from .. import config as config_mod
    from ..errors import LmlabError

    if not args.config:
        raise LmlabError("bench train needs -c CONFIG (a TOML file or a preset: tiny, demo, shakespeare-char)")
    _positive("--steps", args.steps)
    bench.set_threads(args.threads)
    cfg = config_mod.load(args.config, args.overrides)
    print_json({"config": args.config, "overrides": args.overrides, **bench.train(cfg, args.steps, max(args.warmup, 0))})
    return 0


def run_generate(args) -> int:
    from .. import bench
    from ..errors import LmlabError

    try:
        batches = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        raise LmlabError(f"--batch must be comma-separated integers, got {args.batch!r}") from None
    for b in batches:
        _positive("--batch", b)
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
    source["dtype"] = dtype + (", packed for oneDNN" if any(isinstance(m, PackedLinear) for m in model.modules()) else "")
    print_json({**source, **bench.generate(model, batches, args.new, args.prompt, args.reps, params=params)})
    return 0
