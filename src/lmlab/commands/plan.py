"""`lmlab plan -c CONFIG --devices N --memory-gb M [...]`: ranked parallel layouts (see train/planner.py)."""
from __future__ import annotations

import dataclasses

from ..errors import LmlabError
from ..options import COUNT, NONNEG_FLOAT, NONNEG_INT, POSITIVE_FLOAT
from .common import add_config_args, print_json


def register(sub) -> None:
    p = sub.add_parser("plan", help="rank data/tensor/pipeline/FSDP/offload layouts for N devices (estimates)")
    add_config_args(p)
    p.add_argument("--devices", type=COUNT, required=True, help="number of devices (GPUs, or processes here)")
    p.add_argument("--memory-gb", type=POSITIVE_FLOAT, required=True, help="memory per device, GB")
    p.add_argument("--interconnect-gbps", type=POSITIVE_FLOAT, default=100.0,
                   help="Gbit/s per device between nodes (default 100)")
    p.add_argument("--intra-node-gbps", type=NONNEG_FLOAT, default=0.0,
                   help="Gbit/s per device inside a node (default: --interconnect-gbps)")
    p.add_argument("--node-size", type=COUNT, default=8, help="devices per node; TP stays inside one (default 8)")
    p.add_argument("--peak-tflops", type=NONNEG_FLOAT, default=0.0,
                   help="achievable TFLOP/s per device (default: a one-thread matmul peak measured here)")
    p.add_argument("--profile-steps", type=NONNEG_INT, default=0, metavar="K",
                   help="instead, train the config K (>= 3) steps in one process here and use the training "
                        "FLOP/s it achieves (model FLOPs x tokens / step time)")
    p.add_argument("--latency-us", type=NONNEG_FLOAT, default=10.0, help="latency per ring step of a collective (default 10)")
    p.add_argument("--global-batch-tokens", type=NONNEG_INT, default=0,
                   help="tokens per step for every layout (default: train.batch_size x grad_accum per data rank)")
    p.add_argument("--top", type=COUNT, default=10, help="plans to print (default 10)")
    p.add_argument("--json", action="store_true", help="every plan (and the refused layouts) as JSON")
    p.add_argument("--measure", type=NONNEG_INT, default=0, metavar="K",
                   help="also train the K best layouts lmlab can run for a few steps here, predicted vs measured")
    p.add_argument("--steps", type=COUNT, default=6, help="steps per measured layout (default 6)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import config
    from ..train import plan_run, planner

    if args.profile_steps and args.peak_tflops:
        raise LmlabError("give --peak-tflops or --profile-steps, not both")
    if 0 < args.profile_steps < plan_run.PROFILE_MIN_STEPS:
        raise LmlabError(f"--profile-steps must be 0 or >= {plan_run.PROFILE_MIN_STEPS}, got {args.profile_steps}")
    cfg = config.load(args.config, args.overrides)
    plan_run.resolve_vocab(cfg)
    shape = planner.shape_of(cfg)
    profile = None
    if args.profile_steps:
        profile = plan_run.profiled_tflops(args.config, args.overrides, shape.flops_per_token, args.profile_steps)
    peak = args.peak_tflops or (profile["tflops"] if profile else plan_run.measured_peak_tflops(cfg))
    hw = planner.Hardware(devices=args.devices, memory_gb=args.memory_gb, peak_tflops=peak,
                          inter_gbps=args.interconnect_gbps, intra_gbps=args.intra_node_gbps,
                          node_size=args.node_size, latency_us=args.latency_us)
    result = planner.plan(shape, hw, args.global_batch_tokens)
    result["peak_tflops_source"] = ("given" if args.peak_tflops else
                                    f"profiled: {profile['steps']} training steps in one process, one thread"
                                    if profile else "matmul peak measured here, one thread")
    if profile:  # the same plans at the matmul peak too: what calibration changed, from one run
        result["profile"] = profile
        result["matmul_peak_tflops"] = plan_run.measured_peak_tflops(cfg)
        at_peak = planner.plan(shape, dataclasses.replace(hw, peak_tflops=result["matmul_peak_tflops"]),
                               args.global_batch_tokens)
        speed = {r["layout"]: r["tokens_per_s"] for r in at_peak["plans"]}
        for row in result["plans"]:
            row["tokens_per_s_at_matmul_peak"] = speed[row["layout"]]
    if args.measure:
        runnable = [r for r in result["plans"] if r["fits"] and r["lmlab_parallel"]][:args.measure]
        for row in runnable:
            row["measured"] = plan_run.measure(args.config, args.overrides, row, args.devices, args.steps)
    if args.json:
        print_json(result)
    else:
        print(format_plans(result, args.top))
    return 0


def format_plans(result: dict, top: int) -> str:
    hw = result["hardware"]
    inside = f", {hw['intra_gbps']:g} inside" if hw["intra_gbps"] else ""
    lines = [f"{hw['devices']} devices x {hw['memory_gb']:g} GB, {hw['peak_tflops']:.3g} TFLOP/s each "
             f"({result['peak_tflops_source']}), {hw['inter_gbps']:g} Gbit/s between nodes of {hw['node_size']}"
             f"{inside}; {result['shape']['params'] / 1e6:.1f} M parameters",
             f"{'#':>3} {'layout':<31} {'fits':<4} {'GB/dev':>7} {'step ms':>9} {'tok/s':>10} {'MFU':>5}  "
             f"{'train.parallel':<14} why"]
    for i, r in enumerate(result["plans"][:top], 1):
        lines.append(f"{i:>3} {r['layout']:<31} {'yes' if r['fits'] else 'no':<4} {r['memory_gb']['total']:>7.2f} "
                     f"{1e3 * r['time_s']['step_s']:>9.1f} {r['tokens_per_s']:>10.0f} {100 * r['mfu']:>4.0f}%  "
                     f"{r['lmlab_parallel'] or '-':<14} {'; '.join(r['reasons'])}")
        if "measured" in r:
            m = r["measured"]
            lines.append(f"{'':>3} {'  measured here':<31} {'':<4} {m['peak_rss_gb']:>7.2f} "
                         f"{1e3 * r['tokens_per_step'] / m['tokens_per_s']:>9.1f} {m['tokens_per_s']:>10.0f}"
                         f"        (peak RSS of the largest process; predicted/measured tok/s "
                         f"{r['tokens_per_s'] / m['tokens_per_s']:.2f}; rank 0 holds {_state(m)})")
    if result["refused"]:
        lines.append("refused: " + "; ".join(f"{r['layout']} ({r['why']})" for r in result["refused"]))
    return "\n".join(lines)


def _state(measured: dict) -> str:
    """'weights 6.5 MB (cpu), optimizer 13.0 MB (cpu)' from a measured run's memory accounting."""
    parts = [f"{part} {sum(d.values()) / 1e6:.1f} MB ({', '.join(d)})"
             for part, d in measured.get("rank0_memory_bytes", {}).items()]
    return ", ".join(parts) or "nothing reported"
