import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmlab import config
from lmlab.errors import LmlabError
from lmlab import checkpoint
from lmlab.train.loop import train
from lmlab.train.metrics import read as read_metrics

# Slow enough per step (~0.1 s) that a SIGKILL lands mid-run.
RESUME_SETTINGS = ["model.d_model=128", "model.n_layers=3", "model.context=128", "train.batch_size=16",
                   "train.max_steps=24", "train.ckpt_every=6", "train.keep_last=10", "train.eval_every=12",
                   "model.dropout=0.1"]  # dropout: the RNG state must be restored too
# bf16 autocast is emulated (slow) on CPUs without native bf16: a smaller model still takes
# long enough per step that the kill lands between the step-12 and step-24 checkpoints.
SMALLER_FOR = {"bfloat16": ["model.d_model=64", "model.n_layers=2", "model.context=64"]}


def lmlab_train(out, extra=(), wait=True):
    cmd = [sys.executable, "-m", "lmlab.cli", "train", "-c", "tiny", "-o", str(out)]
    for s in [*RESUME_SETTINGS, *extra]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return proc


def losses(run) -> dict:
    return {r["step"]: r["loss"] for r in read_metrics(run)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_after_sigkill_repeats_the_uninterrupted_losses(tmp_path, dtype):
    extra = [f"train.dtype={dtype}", *SMALLER_FOR.get(dtype, [])]
    lmlab_train(tmp_path / "whole", extra)
    proc = lmlab_train(tmp_path / "killed", extra, wait=False)
    half = tmp_path / "killed" / "checkpoints" / "step_0000012"
    deadline = time.time() + 240
    while not half.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "checkpoints" / "step_0000024").exists(), "run finished before the kill"
    cmd_resume = [sys.executable, "-m", "lmlab.cli", "train", "-o", str(tmp_path / "killed"), "--resume"]
    done = subprocess.run(cmd_resume, env={**os.environ, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 25))
    # Same machine, same thread count, deterministic kernels: bitwise equal, in bf16 autocast too.
    assert resumed == whole


def test_refuses_to_overwrite_a_run_without_resume(tiny_run):
    with pytest.raises(LmlabError, match="--resume"):
        train(config.load("tiny"), tiny_run, progress=False)


def test_run_directory_contract(tiny_run):
    assert (tiny_run / "config.toml").is_file()
    records = read_metrics(tiny_run)
    assert [r["step"] for r in records] == list(range(1, 21))
    assert {"step", "loss", "lr", "tokens", "tok_per_s", "elapsed_s"} <= set(records[0])
    assert "val_loss" in records[9] and "val_bpb" in records[-1]
    assert records[-1]["loss"] < records[0]["loss"]
    ckpt = checkpoint.resolve(tiny_run)
    assert ckpt.name == "step_0000020"
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "optim.pt", "state.json", "tokenizer"]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 20 and state["config"]["model"]["n_layers"] == 2


def test_nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(config.load("tiny", ["train.max_steps=3", "train.ckpt_every=1"]), run, progress=False)
    cfg = config.load(str(run / "config.toml"), ["train.max_steps=10"])
    cfg.train.lr = cfg.train.min_lr = math.inf  # past config.validate, which refuses it: the loop's own check
    with pytest.raises(LmlabError, match=r"(loss is nan at step 5|not finite after step 4); .* is step_0000003"):
        train(cfg, run, resume=True, progress=False)
    model, _, _ = checkpoint.load_model(run)
    assert checkpoint.resolve(run).name == "step_0000003"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(LmlabError, match=r"loss is nan at step 2"):  # no checkpoint between: the loss check
        cfg = config.load("tiny", ["train.warmup_steps=0"])
        cfg.train.lr = math.inf
        train(cfg, tmp_path / "r2", progress=False)


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return checkpoint.resolve(dst)


def test_truncated_or_corrupted_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    ckpt = copy_run(tiny_run, tmp_path / "a")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(LmlabError, match="corrupted or truncated"):
        checkpoint.load_model(tmp_path / "a")
    ckpt = copy_run(tiny_run, tmp_path / "b")
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(LmlabError, match="checksum"):
        checkpoint.load_model(tmp_path / "b")
    ckpt = copy_run(tiny_run, tmp_path / "c")
    (ckpt / "state.json").write_text('{"step": 2')
    with pytest.raises(LmlabError, match="state.json"):
        checkpoint.load_model(tmp_path / "c")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/lmlab-pwned",))


def test_loading_never_unpickles_code(tiny_run, tmp_path):
    import pickle

    ckpt = copy_run(tiny_run, tmp_path / "evil")
    torch.save({"optimizer": _Boom()}, ckpt / "optim.pt")
    assert b"system" in (ckpt / "optim.pt").read_bytes()
    with pytest.raises(LmlabError, match="optim.pt"):
        checkpoint.load_optim(ckpt)
    assert not Path("/tmp/lmlab-pwned").exists()
    # the model itself is safetensors + JSON: no pickle anywhere on that path
    assert pickle.PROTO not in (ckpt / "model.safetensors").read_bytes()[:2]


def test_keep_last_prunes_old_checkpoints(tmp_path):
    cfg = config.load("tiny", ["train.ckpt_every=5", "train.keep_last=2"])
    train(cfg, tmp_path / "r", progress=False)
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert names == ["latest", "step_0000015", "step_0000020"]


def test_one_step_with_grad_accumulation_matches_the_update_done_by_hand(tmp_path):
    from lmlab.data import loader
    from lmlab.train.loop import prepare
    from lmlab.train.optim import make_optimizer

    cfg = config.load("tiny", ["train.batch_size=4", "train.grad_accum=2", "train.max_steps=1",
                               "train.eval_every=0", "train.warmup_steps=0", "train.lr=1e-3", "train.min_lr=1e-3"])
    train(cfg, tmp_path / "r", progress=False)
    trained, _, _ = checkpoint.load_model(tmp_path / "r")

    torch.manual_seed(cfg.train.seed)
    _, train_ids, _, model = prepare(config.load("tiny", ["train.batch_size=4"]), None)
    opt = make_optimizer(model, cfg.train, torch.device("cpu"))
    for micro in range(2):
        x, y = loader.random_batch(train_ids, 4, cfg.model.context, cfg.train.seed, 0, micro)
        (model(x, y)[1] / 2).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    opt.step()
    for (name, p), q in zip(model.named_parameters(), trained.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


def test_wall_clock_budget_stops_with_an_evaluation_and_a_checkpoint(tmp_path):
    cfg = config.load("tiny", ["train.max_minutes=1e-6", "train.max_steps=1000"])
    summary = train(cfg, tmp_path / "r", progress=False)
    assert summary["step"] == 1 and "val_bpb" in summary
    assert read_metrics(tmp_path / "r")[-1]["step"] == 1 and "val_loss" in read_metrics(tmp_path / "r")[-1]
    assert checkpoint.resolve(tmp_path / "r").name == "step_0000001"
