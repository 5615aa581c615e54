"""Data-parallel training (torchrun + DDP or FSDP2, gloo on CPU): two ranks with grad_accum A train
the model that one process with grad_accum 2A trains (to float rounding), only rank 0 writes the
run directory, resume and SIGTERM keep the ranks together."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from lmlab import config
from lmlab.infer.generate import generate
from lmlab import checkpoint
from lmlab.train import parallel
from lmlab.train.loop import train
from lmlab.train.metrics import read as read_metrics
from ranks import finish, launch

# min_lr = lr, no warmup: a constant learning rate, so max_steps can change on resume
SETTINGS = ["train.max_steps=6", "train.batch_size=4", "train.min_lr=3e-3", "train.warmup_steps=0", "train.eval_every=3", "train.ckpt_every=3",
            "train.keep_last=10", "train.dtype=float32", "model.dropout=0.0", "train.progress=false"]


def train_args(out, extra=(), resume=False):
    args = ["-m", "lmlab.cli", "train", "-c", "tiny", "-o", str(out)]
    for s in [*SETTINGS, *extra]:
        args += ["--set", s]
    return args + (["--resume"] if resume else [])


def torchrun(out, extra=()):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *train_args(out, extra)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)  # generous: a loaded CPU can slow the ranks 10x
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def launch_ranks(out, extra=(), resume=False):
    """The two processes torchrun would start, started directly (see ranks.py)."""
    return launch(train_args(out, extra, resume))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    stdout = torchrun(root / "ddp", ["train.grad_accum=2"])
    threads = torch.get_num_threads()
    try:  # one process, twice the micro-batches, same thread count as each rank
        cfg = config.load("tiny", [*SETTINGS, "train.grad_accum=4", "train.threads=1"])
        train(cfg, root / "single", progress=False, echo=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    return root, stdout


def test_two_ranks_train_what_one_process_with_double_accumulation_trains(runs):
    root, _ = runs
    ddp, single = read_metrics(root / "ddp"), read_metrics(root / "single")
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, 7))
    for a, b in zip(ddp, single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["tokens"] == b["tokens"]  # batch_size is per rank: 2 ranks x 4 x 2 micro = 1 x 4 x 4
        if "val_loss" in b:  # evaluation split over ranks, totals summed
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
            assert a["val_bpb"] == pytest.approx(b["val_bpb"], rel=1e-5)
    assert ddp[-1]["loss"] < ddp[0]["loss"]
    wa = load_file(checkpoint.resolve(root / "ddp") / "model.safetensors")
    wb = load_file(checkpoint.resolve(root / "single") / "model.safetensors")
    assert wa.keys() == wb.keys()  # the unwrapped module: no "module." prefix
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_only_rank_zero_writes(runs):
    root, stdout = runs
    run = root / "ddp"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "metrics.jsonl"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_0000003", "step_0000006"]
    assert stdout.count('"step": 6') == 1  # one JSON summary, not one per rank


def test_checkpoint_loads_and_generates_in_one_process(runs):
    root, _ = runs
    model, tokenizer, cfg = checkpoint.load_model(root / "ddp")
    text = generate(model, tokenizer, "ROMEO:", max_new_tokens=12, temperature=1.0, seed=0)
    assert isinstance(text, str) and len(text) > 0
    assert not parallel.active()


def test_resume_then_sigterm_to_one_rank(runs, tmp_path):
    """Resume from the step-3 checkpoint (as if the run had died there) with no step limit, then
    SIGTERM rank 1 alone: both ranks stop at the same step, rank 0 checkpoints it, nobody hangs,
    and every step logged after the resume repeats the uninterrupted run's record bit for bit."""
    root, _ = runs
    run = tmp_path / "resumed"
    shutil.copytree(root / "ddp", run)
    shutil.rmtree(run / "checkpoints" / "step_0000006")
    (run / "checkpoints" / "latest").write_text("step_0000003")
    # constant lr (SETTINGS): lifting max_steps leaves steps 4-6 as they were
    procs = launch_ranks(run, ["train.grad_accum=2", "train.max_steps=100000", "train.eval_every=0",
                               "train.ckpt_every=0"], resume=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 60
    # the copied log holds steps 1-6: the resumed run cuts it to 1-3, so 7 lines mean it is training
    while procs[1].poll() is None and time.time() < deadline and len(metrics.read_text().splitlines()) < 7:
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)  # rank 0 learns of it at the step's all-reduce
    codes, outputs = finish(procs)
    assert codes == [2, 2], outputs[0][1][-3000:]
    assert all("checkpoint saved, continue with --resume" in err for _, err in outputs)
    step = int(checkpoint.resolve(run).name.split("_")[1])
    resumed = read_metrics(run)
    assert step >= 7 and [r["step"] for r in resumed] == list(range(1, step + 1))

    def timeless(r):
        return {k: v for k, v in r.items() if k not in ("tok_per_s", "elapsed_s", "val_loss", "val_ppl", "val_bpb")}

    # same ranks, same threads, deterministic kernels and reduction: bitwise equal
    assert [timeless(r) for r in resumed[:6]] == [timeless(r) for r in read_metrics(root / "ddp")]


def test_fsdp_resumes_the_ddp_checkpoint_and_ends_where_one_process_ends(runs, tmp_path):
    """train.parallel=fsdp (FSDP2 fully_shard): the full optimizer state of a checkpoint is
    sharded on resume; the sharded checkpoint it writes reads back as exactly the state a
    one-process run writes (same keys, positions and param_groups)."""
    root, _ = runs
    run = tmp_path / "fsdp"
    shutil.copytree(root / "ddp", run)
    shutil.rmtree(run / "checkpoints" / "step_0000006")
    (run / "checkpoints" / "latest").write_text("step_0000003")
    codes, outputs = finish(launch_ranks(run, ["train.grad_accum=2", "train.parallel=fsdp"], resume=True))
    assert codes == [0, 0], outputs[0][1][-3000:]
    fsdp, single = read_metrics(run), read_metrics(root / "single")
    assert [r["step"] for r in fsdp] == list(range(1, 7))
    for a, b in zip(fsdp, single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert fsdp[-1]["val_loss"] == pytest.approx(single[-1]["val_loss"], rel=1e-5)
    ca, cb = checkpoint.resolve(run), checkpoint.resolve(root / "single")
    assert (ca / "dcp").is_dir() and not (ca / "model.safetensors").exists()  # written in shards
    wa = checkpoint.load_tensors(ca, checkpoint.read_state(ca))
    wb = load_file(cb / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    oa = checkpoint.load_optim(ca)["optimizer"]
    ob = torch.load(cb / "optim.pt", weights_only=True)["optimizer"]
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for i, state in ob["state"].items():
        for k, v in state.items():
            torch.testing.assert_close(oa["state"][i][k], v, rtol=1e-3, atol=1e-7)


def test_step_seed_differs_per_rank_and_repeats_per_step(monkeypatch):
    from lmlab.model.dropout import keep_mask

    seeds = {}
    for r in (0, 1):
        monkeypatch.setenv("RANK", str(r))
        seeds[r] = [parallel.step_seed(7, step) for step in range(3)]
        assert seeds[r] == [parallel.step_seed(7, step) for step in range(3)]  # a function of (seed, step, rank)
    assert len(set(seeds[0] + seeds[1])) == 6
    masks = []
    for s in (seeds[0][1], seeds[1][1]):
        torch.manual_seed(s)
        masks.append(keep_mask((4096,), 0.2))
    assert not torch.equal(*masks)  # the two ranks drop different units at the same step


def test_optimizer_offload_trains_as_one_process_with_clipping(runs, tmp_path):
    """train.offload=optimizer (FSDP2 CPUOffloadPolicy): weights, gradients and AdamW state of each
    shard live in host memory and the step runs there; with a clip small enough to act on every
    step, the losses are one process's with the same clip (on this CPU-only machine the offload
    moves nothing, so this checks the path, the clipping and the accounting)."""
    root, _ = runs
    clip = ["train.grad_clip=0.05"]
    codes, outputs = finish(launch_ranks(tmp_path / "offload", ["train.grad_accum=2", "train.parallel=fsdp",
                                                                "train.offload=optimizer", *clip]))
    assert codes == [0, 0], outputs[0][1][-3000:]
    threads = torch.get_num_threads()
    try:
        cfg = config.load("tiny", [*SETTINGS, "train.grad_accum=4", "train.threads=1", *clip])
        train(cfg, tmp_path / "single-clipped", progress=False, echo=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    off, single = read_metrics(tmp_path / "offload"), read_metrics(tmp_path / "single-clipped")
    for a, b in zip(off, single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # Adam hardly feels a per-step gradient scale, so the clip shows as a small but certain change:
    # the run is ten times closer to one process with the same clip than to one with grad_clip 1.0
    unclipped = read_metrics(root / "single")
    same_clip = max(abs(a["loss"] - b["loss"]) for a, b in zip(off, single))
    assert abs(off[-1]["loss"] - unclipped[-1]["loss"]) > 10 * max(same_clip, 1e-6)
    summary = json.loads(outputs[0][0][outputs[0][0].index("{"):])
    params = sum(v.numel() for v in checkpoint.load_tensors(checkpoint.resolve(tmp_path / "offload"),
                 checkpoint.read_state(checkpoint.resolve(tmp_path / "offload"))).values())
    assert summary["memory_bytes"]["weights"] == {"cpu": 4 * params // 2}  # rank 0's half, on the host
    assert summary["memory_bytes"]["optimizer"]["cpu"] >= 2 * 4 * params // 2  # two moments per weight
